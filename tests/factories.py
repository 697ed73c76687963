from __future__ import annotations

import hashlib
import secrets
from typing import Any

import factory
from django.contrib.auth.models import Group, Permission, User

from approvals.gate.params import params_hash
from approvals.models import ActionType, Agent, ProposedAction, Rule

REFUND_SCHEMA = {
    "type": "object",
    "required": ["order_id", "amount"],
    "properties": {"order_id": {"type": "string"}, "amount": {"type": "number", "minimum": 0}},
}


class ActionTypeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ActionType
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"type_{n}")
    params_schema = factory.LazyFunction(lambda: {"type": "object"})
    policy_version = 1


class RuleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Rule

    action_type = factory.SubFactory(ActionTypeFactory)
    name = factory.Sequence(lambda n: f"rule_{n}")
    require = "true"


class AgentFactory(factory.django.DjangoModelFactory):
    """An agent; its plain token is on ``agent.token`` (factories only: the gate never keeps it)."""

    class Meta:
        model = Agent

    name = factory.Sequence(lambda n: f"agent-{n}")
    token = factory.LazyFunction(lambda: "gat_" + secrets.token_urlsafe(32))
    token_hash = factory.LazyAttribute(lambda o: hashlib.sha256(o.token.encode()).hexdigest())
    token_prefix = factory.LazyAttribute(lambda o: o.token[:10])
    webhook_secret = factory.LazyFunction(lambda: "whsec_" + secrets.token_urlsafe(16))

    @classmethod
    def _create(cls, model_class: type[Agent], *args: Any, **kwargs: Any) -> Agent:
        token = kwargs.pop("token")
        agent = super()._create(model_class, *args, **kwargs)
        agent.token = token  # type: ignore[attr-defined]
        return agent


def reviewers_group() -> Group:
    """The migration's group; transactional tests flush it away, so make it again when needed."""
    group, _ = Group.objects.get_or_create(name="reviewers")
    group.permissions.add(Permission.objects.get(codename="review_action", content_type__app_label="approvals"))
    return group


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("correct-horse-battery")


class ReviewerFactory(UserFactory):
    username = factory.Sequence(lambda n: f"reviewer{n}")

    @factory.post_generation
    def reviewers(self, create: bool, extracted: Any, **kwargs: Any) -> None:
        if create:
            self.groups.add(reviewers_group())


class ProposedActionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProposedAction

    agent = factory.SubFactory(AgentFactory)
    action_type = factory.SubFactory(ActionTypeFactory)
    params = factory.LazyFunction(dict)
    params_hash = factory.LazyAttribute(lambda o: params_hash(o.params))
    request_fingerprint = factory.Sequence(lambda n: f"{n:064d}")
