"""Issue 21, deployable everywhere: reserved concurrency a parameter that can be off (a new account's quota is 10),
the in-flight cap sized from the concurrency, the reconciler not retried, MongoDB by IAM role, each role an
output for its Atlas user, and an over-size body answered 413 by API Gateway itself."""

from __future__ import annotations

import json

import pytest

from infra.config import DeploymentConfig
from infra.topology import TOPOLOGY
from ips_runtime.settings import FUNCTIONS


def function_properties(synthesized, name):
    return synthesized.resources[synthesized.function_id(name)]["Properties"]


def caps(synthesized):
    """Each queue consumer's MaximumConcurrency, by function logical id."""
    return {
        m["Properties"]["FunctionName"]["Ref"]: m["Properties"]["ScalingConfig"]["MaximumConcurrency"]
        for m in synthesized.of_type("AWS::Lambda::EventSourceMapping").values()
        if "ScalingConfig" in m["Properties"]
    }


def test_reserved_concurrency_is_on_by_default(synthesized):
    for spec in TOPOLOGY.functions:
        assert function_properties(synthesized, spec.name).get("ReservedConcurrentExecutions") == (
            spec.reserved_concurrency
        )
    assert caps(synthesized) == {
        synthesized.function_id("process"): 20,
        synthesized.function_id("expand"): 5,
        synthesized.function_id("webhook"): 10,
    }


def test_reserved_concurrency_off_reserves_nothing_and_the_queues_still_cap_their_consumers(synth):
    synthesized = synth(context={"reserveConcurrency": "false"})
    for spec in TOPOLOGY.functions:  # nothing taken from an account quota of 10
        assert "ReservedConcurrentExecutions" not in function_properties(synthesized, spec.name), spec.name
    # MongoDB still sees no more containers than before: the event sources cap them.
    assert caps(synthesized) == {
        synthesized.function_id("process"): 20,
        synthesized.function_id("expand"): 5,
        synthesized.function_id("webhook"): 10,
    }


def test_the_in_flight_cap_is_sized_from_the_process_concurrency(synth, synthesized):
    def in_flight(of):
        return {
            function_properties(of, s.name)["Environment"]["Variables"]["IMAGES_IN_FLIGHT"]
            for s in TOPOLOGY.functions
            if "IMAGES_IN_FLIGHT" in FUNCTIONS[s.name].variables()  # the functions that reserve or release images
        }

    # 20 containers x 4 images/s x 6 hours: a 1,000,000-image catalogue is accepted (it was refused at 500,000).
    assert in_flight(synthesized) == {"1728000"}
    assert int(next(iter(in_flight(synthesized)))) >= 1_000_000
    assert in_flight(synth(context={"processConcurrency": "2"})) == {"172800"}
    assert in_flight(synth(context={"processConcurrency": "2", "imagesInFlight": "900"})) == {"900"}


def test_the_reconciler_is_invoked_once_per_schedule_never_retried_by_lambda(synthesized):
    (config,) = [
        c["Properties"]
        for c in synthesized.of_type("AWS::Lambda::EventInvokeConfig").values()
        if c["Properties"]["FunctionName"] == {"Ref": synthesized.function_id(TOPOLOGY.reconcile_schedule.function)}
    ]
    assert config["MaximumRetryAttempts"] == 0  # a retry would start a round between the scheduled ones
    variables = function_properties(synthesized, TOPOLOGY.reconcile_schedule.function)["Environment"]["Variables"]
    assert variables["RECONCILE_LEASE_SECONDS"] == str(TOPOLOGY.function("reconcile").timeout_s)


@pytest.mark.parametrize(("context", "auth"), [({}, "iam"), ({"mongodbAuth": "uri"}, "uri")])
def test_functions_authenticate_to_atlas_by_their_role_unless_told_otherwise(synth, synthesized, context, auth):
    chosen = synth(context=context) if context else synthesized
    for spec in TOPOLOGY.functions:
        variables = function_properties(chosen, spec.name)["Environment"]["Variables"]
        assert variables["MONGODB_AUTH"] == auth
        assert "MONGODB_URI_SECRET_ARN" in variables and "MONGODB_URI" not in variables  # the secret is kept


def test_a_bad_mongodb_auth_is_refused_by_name():
    with pytest.raises(ValueError, match="mongodbAuth"):
        DeploymentConfig.from_context({"mongodbAuth": "password"}.get, environ={})


def test_each_functions_role_is_an_output_and_the_existing_outputs_keep_their_names(synthesized):
    outputs = synthesized.template.to_json()["Outputs"]
    assert {
        "ApiUrl",
        "DefaultApiKeyId",
        "DefaultUsagePlanId",
        "AssetBaseUrl",
        "WebPageUrl",
        "MongoDbUriSecretArn",
        "WebhookSecretArn",
        "AlarmTopicArn",
        "DashboardName",
    } <= set(outputs)
    for spec in TOPOLOGY.functions:
        role = function_properties(synthesized, spec.name)["Role"]["Fn::GetAtt"][0]
        assert outputs[f"{spec.name.capitalize()}RoleArn"]["Value"] == {"Fn::GetAtt": [role, "Arn"]}


def test_a_body_over_the_functions_payload_is_answered_413_payload_too_large_by_the_gateway(synthesized):
    """API Gateway answers a proxy request whose event Lambda refuses (over 6 MB) with its REQUEST_TOO_LARGE
    gateway response (413): the stack makes that the API's own JSON error, pointing to the presigned route."""
    (response,) = [
        r["Properties"]
        for r in synthesized.of_type("AWS::ApiGateway::GatewayResponse").values()
        if r["Properties"]["ResponseType"] == "REQUEST_TOO_LARGE"
    ]
    assert response["StatusCode"] == "413"
    body = json.loads(response["ResponseTemplates"]["application/json"])
    assert body["code"] == "PAYLOAD_TOO_LARGE" and "POST /api/v1/uploads" in body["message"]
    # Between the CSV cap and what an event holds, the upload function answers the same 413 itself.
    from ips.shared.csv_input import CsvLimits

    assert CsvLimits().max_bytes < TOPOLOGY.payload_limits.function_body_bytes < TOPOLOGY.max_body_bytes
