import pytest

from tests.conftest import LOOKED_UP

pytestmark = pytest.mark.django_db


def test_small_refund_is_auto_approved(policy_v1, propose):
    response = propose({"action_type": "refund", "params": {"order_id": "A-1", "amount": 20}, "trajectory": LOOKED_UP})
    assert response.status_code == 201, response.json()
    assert response.action["status"] == "auto_approved"
