"""The `reviewers` group, carrying approvals.review_action (contract §3)."""

from django.db import migrations


def create_reviewers_group(apps, schema_editor):  # type: ignore[no-untyped-def]
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    content_type, _ = ContentType.objects.get_or_create(app_label="approvals", model="proposedaction")
    permission, _ = Permission.objects.get_or_create(
        content_type=content_type,
        codename="review_action",
        defaults={"name": "Can review and decide proposed actions"},
    )
    group, _ = Group.objects.get_or_create(name="reviewers")
    group.permissions.add(permission)


def remove_reviewers_group(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("auth", "Group").objects.filter(name="reviewers").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_reviewers_group, remove_reviewers_group)]
