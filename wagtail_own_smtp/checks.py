"""System checks (ids wagtail_own_smtp.E0xx / W0xx), registered in AppConfig.ready()."""
