"""Small helpers shared by the reports: a target's verdict, a figure's formatting."""


def target(label, value, threshold):
    """A target's row: met when ``value`` is at least ``threshold`` (None: not measured)."""
    return {
        "label": label,
        "value": value,
        "threshold": threshold,
        "met": None if value is None else value >= threshold,
    }


def fmt(value, spec, missing="-"):
    return missing if value is None else format(value, spec)
