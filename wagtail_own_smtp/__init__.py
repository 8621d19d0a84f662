"""Send a Wagtail site's mail through its editors' own, verified SMTP server."""

__version__ = "0.1.0"

__all__ = ["__version__", "using_site"]


def __getattr__(name):
    # Lazy, so importing the package (e.g. from settings.py) does not import Django models.
    if name == "using_site":
        from .middleware import using_site

        return using_site
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
