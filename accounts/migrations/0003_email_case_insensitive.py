"""Email addresses are stored lowercase and unique whatever their case: sign-in lowercases what
is typed, so a second account differing only in case could never sign in, and would muddle
every lookup by address. Existing addresses are lowercased first; if two accounts differ only
in case, this migration stops with an IntegrityError (naming the address on PostgreSQL), for an
operator to merge or rename one of them before upgrading."""

import django.db.models.functions.text
from django.db import migrations, models
from django.db.models.functions import Lower


def lowercase_emails(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    User.objects.using(schema_editor.connection.alias).exclude(email=Lower("email")).update(
        email=Lower("email")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_administrators_group"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.RunPython(lowercase_emails, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="user",
            constraint=models.UniqueConstraint(
                django.db.models.functions.text.Lower("email"),
                name="accounts_user_email_ci_unique",
                violation_error_message="An account with this email address already exists.",
            ),
        ),
    ]
