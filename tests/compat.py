"""What differs between the supported Wagtail releases (7.4 LTS and 8.x), in one place.

The app itself needs nothing here: what it uses (the ``after_edit_setting`` hook,
``BaseSiteSetting.get_permission_policy`` with per-site policies, the admin's reports, tables,
filters, menu items, header buttons, panels, messages, icons and the templates it extends) is
the same on both. The tests reach deeper, into Wagtail's long-lived permission policies.
"""

from wagtail import VERSION as WAGTAIL_VERSION


def long_lived_permission_policies():
    """The permission policy objects that live as long as the process.

    They cache the content type they check against; a test that flushes the database must make
    them forget it. Wagtail 8 keeps them in ``wagtail.permissions.policy_registry``; 7.4 has a
    few module-level ones (pages, sites, collections, workflows, locales, images, documents).
    """
    if WAGTAIL_VERSION >= (8, 0):
        from wagtail.permissions import policy_registry

        registries = (
            policy_registry.values_by_exact_class,
            policy_registry.values_by_class,
            policy_registry.fallback_policies,
        )
        return [policy for registry in registries for policy in registry.values()]
    from wagtail import permissions
    from wagtail.documents.permissions import permission_policy as documents
    from wagtail.images.permissions import permission_policy as images
    from wagtail.permission_policies import BasePermissionPolicy

    values = vars(permissions).values()
    module_level = [value for value in values if isinstance(value, BasePermissionPolicy)]
    return [*module_level, images, documents]
