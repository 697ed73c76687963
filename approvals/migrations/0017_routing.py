"""Routing by review group (contract §6.3): who reviews an action type's held actions, and who joins
them once they are past their review SLA."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('approvals', '0016_decisions'),
        ('auth', '0012_alter_user_first_name_max_length'),
    ]

    operations = [
        migrations.AddField(
            model_name='actiontype',
            name='escalation_group',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='escalated_action_types', to='auth.group'),
        ),
        migrations.AddField(
            model_name='actiontype',
            name='review_group',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='reviewed_action_types', to='auth.group'),
        ),
    ]
