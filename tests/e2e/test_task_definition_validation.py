"""Every RegisterTaskDefinition validation path: the error code, HTTP 400,
and a message that names the offending field.

Requests go through boto3 with client-side parameter validation turned off,
so the server (not botocore) is what rejects them."""

from __future__ import annotations

import json

import botocore.config
import pytest
from botocore.exceptions import ClientError

from conftest import fargate_taskdef, unique


@pytest.fixture(scope="module")
def ecs_unchecked(berth):
    return berth.boto3_client(
        config=botocore.config.Config(parameter_validation=False, retries={"total_max_attempts": 1})
    )


def c(**kw):
    """A container definition (name app, image busybox) with overrides."""
    return {"name": "app", "image": "busybox:latest", **kw}


HC = {"command": ["CMD-SHELL", "true"]}

# (id, overrides of the minimal Fargate definition, expected code, substrings of the message)
CASES = [
    # --- Fargate cpu/memory table ---------------------------------------
    ("mem-3000-cpu-256", dict(cpu="256", memory="3000"), "ClientException",
     ["memory 3000 is not valid with cpu 256 (valid: 512, 1024, 2048)"]),
    ("mem-4096-cpu-256", dict(cpu="256", memory="4096"), "ClientException", ["memory 4096", "cpu 256"]),
    ("mem-512-cpu-512", dict(cpu="512", memory="512"), "ClientException", ["memory 512", "cpu 512"]),
    ("mem-1536-cpu-512", dict(cpu="512", memory="1536"), "ClientException", ["memory 1536", "cpu 512"]),
    ("mem-5120-cpu-512", dict(cpu="512", memory="5120"), "ClientException", ["memory 5120", "cpu 512"]),
    ("mem-1024-cpu-1024", dict(cpu="1024", memory="1024"), "ClientException", ["memory 1024", "cpu 1024"]),
    ("mem-9216-cpu-1024", dict(cpu="1024", memory="9216"), "ClientException", ["memory 9216", "cpu 1024"]),
    ("mem-17408-cpu-2048", dict(cpu="2048", memory="17408"), "ClientException", ["memory 17408", "cpu 2048"]),
    ("mem-31744-cpu-4096", dict(cpu="4096", memory="31744"), "ClientException", ["memory 31744", "cpu 4096"]),
    ("mem-18432-cpu-8192", dict(cpu="8192", memory="18432"), "ClientException", ["memory 18432", "cpu 8192"]),
    ("mem-36864-cpu-16384", dict(cpu="16384", memory="36864"), "ClientException", ["memory 36864", "cpu 16384"]),
    ("mem-131072-cpu-16384", dict(cpu="16384", memory="131072"), "ClientException", ["memory 131072", "cpu 16384"]),
    ("cpu-300", dict(cpu="300", memory="512"), "ClientException", ["cpu"]),
    ("cpu-not-a-number", dict(cpu="lots", memory="512"), "ClientException", ["cpu"]),
    ("memory-not-a-number", dict(cpu="256", memory="plenty"), "ClientException", ["memory"]),
    # --- Fargate requirements -------------------------------------------
    ("fargate-bridge", dict(networkMode="bridge"), "ClientException", ["networkMode"]),
    ("fargate-host", dict(networkMode="host"), "ClientException", ["networkMode"]),
    ("fargate-no-network-mode", dict(networkMode=None), "ClientException", ["networkMode"]),
    ("fargate-no-cpu", dict(cpu=None), "ClientException", ["cpu"]),
    ("fargate-no-memory", dict(memory=None), "ClientException", ["memory"]),
    ("fargate-privileged", dict(containerDefinitions=[c(privileged=True)]), "ClientException", ["privileged"]),
    ("fargate-devices",
     dict(containerDefinitions=[c(linuxParameters={"devices": [{"hostPath": "/dev/fuse"}]})]),
     "ClientException", ["devices"]),
    # --- containers -----------------------------------------------------
    ("no-containers", dict(containerDefinitions=[]), "ClientException", ["containerDefinitions"]),
    ("container-no-name", dict(containerDefinitions=[{"image": "busybox"}]), "ClientException", ["name"]),
    ("container-no-image", dict(containerDefinitions=[{"name": "app"}]), "ClientException", ["image"]),
    ("container-names-unique", dict(containerDefinitions=[c(), c()]), "ClientException", ["name", "app"]),
    ("container-bad-name", dict(containerDefinitions=[c(name="bad name")]), "ClientException", ["name"]),
    ("no-essential",
     dict(containerDefinitions=[c(essential=False), c(name="side", essential=False)]),
     "ClientException", ["essential"]),
    ("container-memory-over-task", dict(containerDefinitions=[c(memory=1024)]), "ClientException", ["memory"]),
    ("container-cpu-sum-over-task",
     dict(containerDefinitions=[c(cpu=200), c(name="side", cpu=100)]), "ClientException", ["cpu"]),
    ("memory-reservation-over-memory",
     dict(containerDefinitions=[c(memory=256, memoryReservation=300)]), "ClientException", ["memoryReservation"]),
    # --- port mappings --------------------------------------------------
    ("container-port-0", dict(containerDefinitions=[c(portMappings=[{"containerPort": 0}])]),
     "ClientException", ["containerPort"]),
    ("container-port-65536", dict(containerDefinitions=[c(portMappings=[{"containerPort": 65536}])]),
     "ClientException", ["containerPort"]),
    ("container-port-negative", dict(containerDefinitions=[c(portMappings=[{"containerPort": -1}])]),
     "ClientException", ["containerPort"]),
    ("protocol-sctp", dict(containerDefinitions=[c(portMappings=[{"containerPort": 80, "protocol": "sctp"}])]),
     "ClientException", ["protocol"]),
    ("awsvpc-host-port-differs",
     dict(containerDefinitions=[c(portMappings=[{"containerPort": 80, "hostPort": 8080}])]),
     "ClientException", ["hostPort"]),
    # --- dependsOn ------------------------------------------------------
    ("depends-on-missing",
     dict(containerDefinitions=[c(dependsOn=[{"containerName": "ghost", "condition": "START"}])]),
     "ClientException", ["dependsOn", "ghost"]),
    ("depends-on-cycle",
     dict(containerDefinitions=[
         c(dependsOn=[{"containerName": "b", "condition": "START"}]),
         c(name="b", essential=False, dependsOn=[{"containerName": "app", "condition": "START"}]),
     ]),
     "ClientException", ["cycle"]),
    ("depends-on-three-cycle",
     dict(containerDefinitions=[
         c(dependsOn=[{"containerName": "b", "condition": "START"}]),
         c(name="b", essential=False, dependsOn=[{"containerName": "d", "condition": "START"}]),
         c(name="d", essential=False, dependsOn=[{"containerName": "app", "condition": "START"}]),
     ]),
     "ClientException", ["cycle"]),
    ("depends-on-bad-condition",
     dict(containerDefinitions=[
         c(dependsOn=[{"containerName": "b", "condition": "READY"}]),
         c(name="b", essential=False),
     ]),
     "ClientException", ["condition"]),
    ("depends-on-healthy-without-healthcheck",
     dict(containerDefinitions=[
         c(dependsOn=[{"containerName": "b", "condition": "HEALTHY"}]),
         c(name="b", essential=False),
     ]),
     "ClientException", ["healthCheck"]),
    # --- healthCheck bounds ---------------------------------------------
    ("hc-interval-4", dict(containerDefinitions=[c(healthCheck={**HC, "interval": 4})]),
     "ClientException", ["interval"]),
    ("hc-interval-301", dict(containerDefinitions=[c(healthCheck={**HC, "interval": 301})]),
     "ClientException", ["interval"]),
    ("hc-timeout-1", dict(containerDefinitions=[c(healthCheck={**HC, "timeout": 1})]),
     "ClientException", ["timeout"]),
    ("hc-timeout-121", dict(containerDefinitions=[c(healthCheck={**HC, "interval": 300, "timeout": 121})]),
     "ClientException", ["timeout"]),
    ("hc-retries-0", dict(containerDefinitions=[c(healthCheck={**HC, "retries": 0})]),
     "ClientException", ["retries"]),
    ("hc-retries-11", dict(containerDefinitions=[c(healthCheck={**HC, "retries": 11})]),
     "ClientException", ["retries"]),
    ("hc-start-period-negative", dict(containerDefinitions=[c(healthCheck={**HC, "startPeriod": -1})]),
     "ClientException", ["startPeriod"]),
    ("hc-start-period-301", dict(containerDefinitions=[c(healthCheck={**HC, "startPeriod": 301})]),
     "ClientException", ["startPeriod"]),
]


@pytest.mark.parametrize("overrides,code,substrings", [x[1:] for x in CASES], ids=[x[0] for x in CASES])
def test_register_rejected(ecs_unchecked, overrides, code, substrings):
    family = unique("invalid")
    td = fargate_taskdef(family)
    for k, v in overrides.items():
        if v is None:
            td.pop(k, None)
        else:
            td[k] = v
    with pytest.raises(ClientError) as e:
        ecs_unchecked.register_task_definition(**td)
    err = e.value.response
    assert err["Error"]["Code"] == code, err
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 400, err
    message = err["Error"]["Message"]
    assert message.startswith(f"task definition {family}: "), message
    for s in substrings:
        assert s in message, f"{s!r} not in {message!r}"
    # Nothing was registered.
    assert ecs_unchecked.list_task_definitions(familyPrefix=family)["taskDefinitionArns"] == []


@pytest.mark.parametrize(
    "family",
    ["bad family", "dots.not.allowed", "x" * 256, "slash/family", "colon:1"],
    ids=["space", "dots", "too-long", "slash", "colon"],
)
def test_register_invalid_family(ecs_unchecked, family):
    with pytest.raises(ClientError) as e:
        ecs_unchecked.register_task_definition(**fargate_taskdef(family))
    err = e.value.response
    assert err["Error"]["Code"] == "ClientException", err
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "family" in err["Error"]["Message"]


def test_register_empty_family(ecs_unchecked):
    with pytest.raises(ClientError) as e:
        ecs_unchecked.register_task_definition(**fargate_taskdef(""))
    err = e.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert err["Error"]["Code"] in ("ClientException", "InvalidParameterException"), err
    assert "family" in err["Error"]["Message"]


def test_register_family_of_255_characters(ecs_unchecked, berth):
    family = unique("f") + "x" * (255 - len(unique("f")))
    assert len(family) == 255
    td = ecs_unchecked.register_task_definition(**fargate_taskdef(family))["taskDefinition"]
    assert td["taskDefinitionArn"] == berth.taskdef_arn(family, 1)


def test_register_over_64_kib_rejected(ecs_unchecked):
    family = unique("huge")
    env = [{"name": f"VAR_{i}", "value": "v" * 1000} for i in range(80)]  # ~80 KiB of JSON
    td = fargate_taskdef(family, containerDefinitions=[c(environment=env)])
    assert 64 * 1024 < len(json.dumps(td)) < 1024 * 1024
    with pytest.raises(ClientError) as e:
        ecs_unchecked.register_task_definition(**td)
    err = e.value.response
    assert err["Error"]["Code"] == "ClientException", err
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "bytes" in err["Error"]["Message"] or "size" in err["Error"]["Message"], err


def test_register_just_under_64_kib_accepted(ecs_unchecked):
    family = unique("big")
    env = [{"name": f"VAR_{i}", "value": "v" * 1000} for i in range(50)]  # ~52 KiB
    td = fargate_taskdef(family, containerDefinitions=[c(environment=env)])
    out = ecs_unchecked.register_task_definition(**td)["taskDefinition"]
    assert len(out["containerDefinitions"][0]["environment"]) == 50


def test_register_body_over_1_mib_is_413(raw):
    family = unique("toolarge")
    env = [{"name": f"VAR_{i}", "value": "v" * 1000} for i in range(2100)]  # ~2 MiB
    r = raw.send("RegisterTaskDefinition", fargate_taskdef(family, containerDefinitions=[c(environment=env)]))
    assert (r.status, r.type) == (413, "RequestEntityTooLargeException"), r


@pytest.mark.parametrize(
    "body",
    [
        # a container cpu must be an integer
        lambda f: {**fargate_taskdef(f), "containerDefinitions": [c(cpu="abc")]},
        # essential must be a boolean
        lambda f: {**fargate_taskdef(f), "containerDefinitions": [c(essential="very")]},
        # containerDefinitions must be a list
        lambda f: {**fargate_taskdef(f), "containerDefinitions": {"name": "app"}},
        # containerPort must be an integer
        lambda f: {**fargate_taskdef(f), "containerDefinitions": [c(portMappings=[{"containerPort": "80"}])]},
        # family must be a string
        lambda f: {**fargate_taskdef(f), "family": 42},
    ],
    ids=["container-cpu-string", "essential-string", "containers-object", "port-string", "family-number"],
)
def test_register_type_errors_are_serialization_exceptions(raw, ecs, body):
    family = unique("types")
    r = raw.send("RegisterTaskDefinition", body(family))
    assert (r.status, r.type) == (400, "SerializationException"), r
    assert ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"] == []


@pytest.mark.parametrize(
    "body", [b"not json", b"{\"family\": ", b"[]", b"\"string\""], ids=["text", "truncated", "array", "string"]
)
def test_register_non_json_body(raw, body):
    r = raw.send("RegisterTaskDefinition", body)
    assert (r.status, r.type) == (400, "SerializationException"), r
