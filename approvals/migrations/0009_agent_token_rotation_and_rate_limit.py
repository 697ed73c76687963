from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0008_audit_chain"),
    ]

    operations = [
        migrations.AlterField(
            model_name="agent",
            name="token_hash",
            field=models.CharField(blank=True, max_length=64, null=True, unique=True),
        ),
        migrations.AlterField(
            model_name="agent",
            name="token_prefix",
            field=models.CharField(blank=True, max_length=12),
        ),
        migrations.AddField(
            model_name="agent",
            name="previous_token_hash",
            field=models.CharField(blank=True, max_length=64, null=True, unique=True),
        ),
        migrations.AddField(
            model_name="agent",
            name="previous_token_expires_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="agent",
            name="token_rotated_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="agent",
            name="token_revoked_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="agent",
            name="rate_limit_per_minute",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="Requests per minute for this agent (0: unlimited); empty: the gate's default "
                "(GATE_AGENT_RATE_PER_MINUTE)",
                null=True,
            ),
        ),
    ]
