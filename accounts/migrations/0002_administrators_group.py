"""The "Workgate administrators" group: every Django permission the admin API asks for.

The admin API used to let any staff account do everything; it now checks the same Django
permissions as the admin site. So that upgrading changes nothing for anyone, the staff accounts
that exist when this runs (superusers aside, who hold every permission anyway) join the group.
Reversing it deletes the group (its members lose these permissions); applying it again puts
every staff account of that moment in it.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "Workgate administrators"
PERMISSIONS = [
    ("workspaces", "add_workspace"),
    ("workspaces", "change_workspace"),
    ("workspaces", "delete_workspace"),
    ("workspaces", "view_workspace"),
    ("sessions_app", "change_workspacesession"),
    ("sessions_app", "view_workspacesession"),
    ("audit", "view_auditentry"),
    ("streaming", "view_history"),
]


def create_group(apps, schema_editor):
    # Django creates permissions after the last migration (post_migrate); a fresh database has
    # none yet, so create those of the apps the group needs now (the usual recipe: the
    # migration state's app configs have no models module, which create_permissions requires).
    alias = schema_editor.connection.alias
    for label in sorted({label for label, _ in PERMISSIONS}):
        config = apps.get_app_config(label)
        config.models_module = True
        create_permissions(config, apps=apps, verbosity=0, using=alias)
        config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    User = apps.get_model("accounts", "User")
    group, _ = Group.objects.using(alias).get_or_create(name=GROUP)
    for label, codename in PERMISSIONS:
        group.permissions.add(
            Permission.objects.using(alias).get(content_type__app_label=label, codename=codename)
        )
    for user in User.objects.using(alias).filter(is_staff=True, is_superuser=False):
        user.groups.add(group)


def delete_group(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Group.objects.using(schema_editor.connection.alias).filter(name=GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        # The models whose permissions the group holds, and nothing later: rolling those apps'
        # later migrations back must not undo this one.
        ("audit", "0001_initial"),
        ("sessions_app", "0001_initial"),
        ("streaming", "0001_initial"),
        ("workspaces", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_group, delete_group)]
