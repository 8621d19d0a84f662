"""Public confirmation view and the status panel's admin actions."""
