"""api.deploy_on_azure: one PUT to Azure's control plane when the settings exist, one line and nothing sent without."""
import json

import httpx
import pytest

from helpers import api

SETTINGS = {"AZURE_SUBSCRIPTION_ID": "sub-1", "AZURE_RESOURCE_GROUP": "rg-course", "AZURE_OPENAI_RESOURCE": "larkspur",
            "AZURE_MANAGEMENT_TOKEN": "secret-token"}
MODEL = "gpt-4o-mini-2024-07-18.ft-0123456789abcdef"


def test_the_request_names_the_resource_and_the_model():
    request = api.azure_deployment_request(MODEL, "intents", subscription="sub-1", resource_group="rg-course",
                                           resource="larkspur")
    assert request["method"] == "PUT"
    assert request["url"] == ("https://management.azure.com/subscriptions/sub-1/resourceGroups/rg-course/providers/"
                              "Microsoft.CognitiveServices/accounts/larkspur/deployments/intents")
    assert request["params"] == {"api-version": api.AZURE_MANAGEMENT_API_VERSION}
    assert request["json"]["properties"]["model"] == {"format": "OpenAI", "name": MODEL, "version": "1"}
    assert "secret" not in json.dumps(request)


def test_without_settings_it_skips_in_one_line_and_sends_nothing(capsys):
    def refuse(request):
        raise AssertionError("nothing may be sent without settings")

    assert api.deploy_on_azure(MODEL, "intents", environ={}, transport=httpx.MockTransport(refuse)) is None
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("Skipped the Azure deployment:")
    assert "AZURE_MANAGEMENT_TOKEN" in out
    assert api.delete_azure_deployment("intents", environ={}) is False


def test_deploys_and_waits_until_provisioned(monkeypatch, capsys):
    monkeypatch.setattr(api.time, "sleep", lambda seconds: None)
    seen = []
    states = iter(["Creating", "Creating", "Succeeded"])

    def azure(request):
        seen.append((request.method, request.url.params["api-version"], request.headers["Authorization"]))
        if request.method == "PUT":
            assert json.loads(request.content)["properties"]["model"]["name"] == MODEL
        return httpx.Response(200, json={"name": "intents", "properties": {"provisioningState": next(states)}})

    deployment = api.deploy_on_azure(MODEL, "intents", environ=SETTINGS, transport=httpx.MockTransport(azure))
    assert deployment["properties"]["provisioningState"] == "Succeeded"
    assert [method for method, _, _ in seen] == ["PUT", "GET", "GET"]
    assert {auth for _, _, auth in seen} == {"Bearer secret-token"}
    assert "secret-token" not in capsys.readouterr().out


def test_an_azure_error_is_a_clear_error_without_the_token():
    def azure(request):
        return httpx.Response(403, json={"error": {"code": "AuthorizationFailed", "message": "no access"}})

    with pytest.raises(api.AzureDeploymentError, match="403.*AuthorizationFailed: no access") as err:
        api.deploy_on_azure(MODEL, "intents", environ=SETTINGS, transport=httpx.MockTransport(azure))
    assert "secret-token" not in str(err.value)


def test_a_failed_provisioning_raises():
    def azure(request):
        return httpx.Response(200, json={"properties": {"provisioningState": "Failed"}})

    with pytest.raises(api.AzureDeploymentError, match="provisioningState Failed"):
        api.deploy_on_azure(MODEL, "intents", environ=SETTINGS, transport=httpx.MockTransport(azure))


def test_delete_sends_one_delete():
    methods = []

    def azure(request):
        methods.append(request.method)
        return httpx.Response(204)

    assert api.delete_azure_deployment("intents", environ=SETTINGS, transport=httpx.MockTransport(azure)) is True
    assert methods == ["DELETE"]


def test_the_request_reads_names_from_the_settings_or_shows_placeholders():
    assert "/subscriptions/sub-1/resourceGroups/rg-course/" in api.azure_deployment_request(
        MODEL, "intents", environ=SETTINGS)["url"]
    assert "/subscriptions/<subscription-id>/resourceGroups/<resource-group>/" in api.azure_deployment_request(
        MODEL, "intents", environ={})["url"]
