"""Notifications of held actions (contract §6.3): notify_emails and notify_slack per action type, a
notification row per action and channel, and reviewers' profiles (their Slack user id)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('approvals', '0017_routing'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='actiontype',
            name='notify_emails',
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name='actiontype',
            name='notify_slack',
            field=models.BooleanField(default=True),
        ),
        migrations.CreateModel(
            name='Notification',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('channel', models.CharField(choices=[('email', 'E-mail'), ('slack', 'Slack')], max_length=10)),
                ('state', models.CharField(choices=[('pending', 'Pending'), ('sent', 'Sent'), ('failed', 'Failed'), ('skipped', 'Skipped')], default='pending', max_length=10)),
                ('attempts', models.PositiveIntegerField(default=0)),
                ('last_error', models.TextField(blank=True)),
                ('leased_until', models.DateTimeField(blank=True, null=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('sent_at', models.DateTimeField(blank=True, null=True)),
                ('slack_channel', models.CharField(blank=True, max_length=40)),
                ('slack_ts', models.CharField(blank=True, max_length=40)),
                ('response_url', models.CharField(blank=True, max_length=2000)),
                ('response_url_at', models.DateTimeField(blank=True, null=True)),
                ('shown_digest', models.CharField(blank=True, max_length=64)),
                ('updated_at', models.DateTimeField(blank=True, null=True)),
                ('action', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='notifications', to='approvals.proposedaction')),
            ],
            options={
                'ordering': ['-created_at'],
                'indexes': [models.Index(condition=models.Q(('state', 'failed')), fields=['-created_at'], name='notification_failed_idx')],
                'constraints': [models.UniqueConstraint(fields=('action', 'channel'), name='one_notification_per_channel')],
            },
        ),
        migrations.CreateModel(
            name='ReviewerProfile',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('slack_user_id', models.CharField(blank=True, help_text='The member ID in Slack (profile → ⋮ → Copy member ID), e.g. U024BE7LH.', max_length=32)),
                ('user', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='reviewer_profile', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'constraints': [models.UniqueConstraint(condition=models.Q(('slack_user_id', ''), _negated=True), fields=('slack_user_id',), name='unique_slack_user_id', violation_error_message='This Slack user id is recorded for another reviewer already.')],
            },
        ),
    ]
