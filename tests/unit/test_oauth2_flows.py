"""Specification of the consent flows' pure parts and of the device flow's polling (fake endpoint)."""

from __future__ import annotations

import base64
import hashlib
import urllib.parse

import pytest

from mailingest.oauth2 import flows as oauth2_flows
from mailingest.oauth2.endpoint import DEVICE_GRANT, OAuth2Error

ENDPOINTS = oauth2_flows.Endpoints(token_url="https://idp/token", auth_url="https://idp/auth",
                                   device_url="https://idp/device", scope="mail offline_access",
                                   auth_params=(("access_type", "offline"),))


def test_pkce_challenge_is_the_s256_of_the_verifier():
    verifier, challenge = oauth2_flows.pkce_pair()
    assert 43 <= len(verifier) <= 128
    assert challenge == base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def test_authorization_url_has_pkce_state_scope_and_provider_extras():
    url = oauth2_flows.authorization_url(ENDPOINTS, "cid", "http://127.0.0.1:5000/", "st4te", "ch4llenge", "a@x")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert query == {"response_type": "code", "client_id": "cid", "redirect_uri": "http://127.0.0.1:5000/",
                     "scope": "mail offline_access", "state": "st4te", "code_challenge": "ch4llenge",
                     "code_challenge_method": "S256", "access_type": "offline", "login_hint": "a@x"}


class FakeDeviceEndpoint:
    def __init__(self, answers):
        self.answers = list(answers)
        self.requests = []

    def __call__(self, url, fields, *, timeout, context, what):
        self.requests.append((url, dict(fields)))
        if url.endswith("/device"):
            return {"device_code": "dev-code", "user_code": "ABCD-EFGH", "verification_uri": "https://idp/activate",
                    "interval": 2, "expires_in": 60}
        answer = self.answers.pop(0)
        if isinstance(answer, str):
            raise OAuth2Error(f"{what}: {answer}", answer)
        return answer


def run_device_flow(monkeypatch, answers):
    endpoint = FakeDeviceEndpoint(answers)
    monkeypatch.setattr(oauth2_flows, "post_form", endpoint)
    clock = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        clock[0] += seconds

    shown = []
    result = oauth2_flows.device_flow(ENDPOINTS, "cid", None, show=shown.append, sleep=sleep, clock=lambda: clock[0])
    return result, endpoint, slept, shown


def test_device_flow_polls_until_approved_and_slows_down_when_asked(monkeypatch):
    result, endpoint, slept, shown = run_device_flow(monkeypatch, [
        "authorization_pending", "slow_down", {"access_token": "at", "refresh_token": "rt", "expires_in": 60}])
    assert result.refresh_token == "rt"
    assert slept == [2, 2, 7]
    assert shown == ["On any device, open https://idp/activate and enter the code ABCD-EFGH"]
    assert endpoint.requests[1][1] == {"grant_type": DEVICE_GRANT, "device_code": "dev-code", "client_id": "cid"}


def test_device_flow_stops_on_denial(monkeypatch):
    with pytest.raises(OAuth2Error) as caught:
        run_device_flow(monkeypatch, ["authorization_pending", "access_denied"])
    assert caught.value.code == "access_denied"


def test_device_flow_gives_up_when_the_code_expires(monkeypatch):
    with pytest.raises(OAuth2Error, match="expired before the user approved"):
        run_device_flow(monkeypatch, ["authorization_pending"] * 40)
