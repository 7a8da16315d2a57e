"""The ELBv2 API (AWS Query protocol) through the AWS CLI, boto3 and raw
signed requests: shapes, waiters, error codes, pagination, tags and the
round trip of rules. API only: the instance has no agent (and no data path
is needed for any of this)."""

from __future__ import annotations

import urllib.parse
import xml.etree.ElementTree as ET

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.config
import botocore.credentials
import pytest
from botocore.exceptions import ClientError

from conftest import AwsCli, BerthProcess, _send, error_of, unique

NS = "{http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/}"


@pytest.fixture(scope="module")
def inst(tmp_path_factory: pytest.TempPathFactory):
    p = BerthProcess(
        tmp_path_factory.mktemp("berth-elbv2") / "data",
        agent=False,
        extra_args=["--lb-target-networks", "127.0.0.0/8"],
    )
    p.start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def elb(inst: BerthProcess):
    return boto3.session.Session().client(
        "elbv2",
        endpoint_url=inst.env["AWS_ENDPOINT_URL"],
        aws_access_key_id=inst.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=inst.env["AWS_SECRET_ACCESS_KEY"],
        region_name=inst.env["AWS_REGION"],
        config=botocore.config.Config(retries={"total_max_attempts": 1}, read_timeout=30),
    )


@pytest.fixture(scope="module")
def cli(inst: BerthProcess, tmp_path_factory: pytest.TempPathFactory) -> AwsCli:
    return AwsCli(inst, tmp_path_factory.mktemp("aws-cli-elbv2"))


_PORTS = iter(range(21000, 22000))


def next_port() -> int:
    return next(_PORTS)


def ip(inst: BerthProcess, host: int, subnet: int = 1) -> str:
    return f"{inst.net16}.{subnet}.{host}"


def new_lb(elb, **kw) -> dict:
    return elb.create_load_balancer(Name=unique("lb")[:32], **kw)["LoadBalancers"][0]


def new_tg(elb, **kw) -> dict:
    args = dict(Name=unique("tg")[:32], Protocol="HTTP", Port=8080, VpcId="vpc-1", TargetType="ip")
    args.update(kw)
    return elb.create_target_group(**args)["TargetGroups"][0]


def forward(tg_arn: str) -> list[dict]:
    return [{"Type": "forward", "TargetGroupArn": tg_arn}]


def new_listener(elb, lb_arn: str, tg_arn: str, port: int | None = None) -> dict:
    return elb.create_listener(
        LoadBalancerArn=lb_arn, Protocol="HTTP", Port=port or next_port(), DefaultActions=forward(tg_arn)
    )["Listeners"][0]


def code_of(excinfo) -> str:
    code, status, _ = error_of(excinfo)
    assert status == 400, excinfo.value.response
    return code


# --------------------------------------------------------------------------
# The AWS CLI
# --------------------------------------------------------------------------


def test_cli_lifecycle_and_waiters(cli: AwsCli, inst: BerthProcess):
    name = unique("cli")[:32]
    lb = cli.ok(
        "elbv2", "create-load-balancer", "--name", name,
        "--subnets", "subnet-a", "subnet-b", "--security-groups", "sg-1",
        "--tags", "Key=team,Value=blue",
    )["LoadBalancers"][0]
    assert lb["LoadBalancerName"] == name
    assert lb["Type"] == "application" and lb["Scheme"] == "internet-facing"
    assert lb["State"] == {"Code": "active"}
    assert lb["LoadBalancerArn"].startswith(
        f"arn:aws:elasticloadbalancing:{inst.region}:{inst.account}:loadbalancer/app/{name}/"
    )
    lb_id = lb["LoadBalancerArn"].rsplit("/", 1)[1]
    assert lb["DNSName"] == f"{name.lower()}-{lb_id}.{inst.region}.elb.localhost"
    assert [z["ZoneName"] for z in lb["AvailabilityZones"]] == [f"{inst.region}a", f"{inst.region}b"]
    assert [z["SubnetId"] for z in lb["AvailabilityZones"]] == ["subnet-a", "subnet-b"]
    assert lb["SecurityGroups"] == ["sg-1"]
    assert lb["CreatedTime"].endswith("Z") or "+" in lb["CreatedTime"]
    cli.ok("elbv2", "wait", "load-balancer-available", "--names", name)

    tg = cli.ok(
        "elbv2", "create-target-group", "--name", name, "--protocol", "HTTP", "--port", "8080",
        "--vpc-id", "vpc-1", "--target-type", "ip", "--health-check-path", "/healthz",
        "--matcher", "HttpCode=200-299",
    )["TargetGroups"][0]
    assert tg["HealthCheckPath"] == "/healthz" and tg["Matcher"] == {"HttpCode": "200-299"}
    port = next_port()
    listener = cli.ok(
        "elbv2", "create-listener", "--load-balancer-arn", lb["LoadBalancerArn"],
        "--protocol", "HTTP", "--port", str(port),
        "--default-actions", f"Type=forward,TargetGroupArn={tg['TargetGroupArn']}",
    )["Listeners"][0]
    assert listener["Port"] == port
    assert listener["DefaultActions"][0]["TargetGroupArn"] == tg["TargetGroupArn"]
    rule = cli.ok(
        "elbv2", "create-rule", "--listener-arn", listener["ListenerArn"], "--priority", "5",
        "--conditions", '[{"Field":"path-pattern","PathPatternConfig":{"Values":["/api/*"]}},'
        '{"Field":"host-header","Values":["api.example.com"]}]',
        "--actions", f"Type=forward,TargetGroupArn={tg['TargetGroupArn']}",
    )["Rules"][0]
    assert rule["Priority"] == "5" and rule["IsDefault"] is False
    rules = cli.ok("elbv2", "describe-rules", "--listener-arn", listener["ListenerArn"])["Rules"]
    assert [r["Priority"] for r in rules] == ["5", "default"]
    assert rules[0]["Conditions"] == [
        {"Field": "path-pattern", "Values": ["/api/*"], "PathPatternConfig": {"Values": ["/api/*"]}},
        {"Field": "host-header", "Values": ["api.example.com"], "HostHeaderConfig": {"Values": ["api.example.com"]}},
    ]
    described = cli.ok("elbv2", "describe-target-groups", "--names", name)["TargetGroups"][0]
    assert described["LoadBalancerArns"] == [lb["LoadBalancerArn"]]
    tags = cli.ok("elbv2", "describe-tags", "--resource-arns", lb["LoadBalancerArn"])["TagDescriptions"]
    assert tags == [{"ResourceArn": lb["LoadBalancerArn"], "Tags": [{"Key": "team", "Value": "blue"}]}]

    cli.ok("elbv2", "delete-load-balancer", "--load-balancer-arn", lb["LoadBalancerArn"])
    cli.ok("elbv2", "wait", "load-balancers-deleted", "--load-balancer-arns", lb["LoadBalancerArn"])
    gone = cli("elbv2", "describe-load-balancers", "--names", name)
    assert gone.returncode != 0 and "LoadBalancerNotFound" in gone.stderr, str(gone)
    # Its listener and rule went with it; the target group is free again.
    gone = cli("elbv2", "describe-listeners", "--listener-arns", listener["ListenerArn"])
    assert gone.returncode != 0 and "ListenerNotFound" in gone.stderr, str(gone)
    cli.ok("elbv2", "delete-target-group", "--target-group-arn", tg["TargetGroupArn"])


def test_cli_targets_and_deregistered_waiter(cli: AwsCli, elb, inst: BerthProcess):
    tg = new_tg(elb)
    arn = tg["TargetGroupArn"]
    cli.ok(
        "elbv2", "modify-target-group-attributes", "--target-group-arn", arn,
        "--attributes", "Key=deregistration_delay.timeout_seconds,Value=0",
    )
    target = ip(inst, 7)
    cli.ok("elbv2", "register-targets", "--target-group-arn", arn, "--targets", f"Id={target}")
    health = cli.ok("elbv2", "describe-target-health", "--target-group-arn", arn)["TargetHealthDescriptions"]
    assert health == [{
        "Target": {"Id": target, "Port": 8080},
        "HealthCheckPort": "8080",
        "TargetHealth": {
            "State": "unused", "Reason": "Target.NotInUse",
            "Description": "Target group is not configured to receive traffic from the load balancer",
        },
    }]
    cli.ok("elbv2", "deregister-targets", "--target-group-arn", arn, "--targets", f"Id={target}")
    cli.ok("elbv2", "wait", "target-deregistered", "--target-group-arn", arn, "--targets", f"Id={target},Port=8080")
    bad = cli("elbv2", "register-targets", "--target-group-arn", arn, "--targets", "Id=i-0123456789abcdef0")
    assert bad.returncode != 0 and "InvalidTarget" in bad.stderr, str(bad)


# --------------------------------------------------------------------------
# boto3: shapes and semantics
# --------------------------------------------------------------------------


def test_create_is_idempotent_and_duplicates_are_refused(elb):
    name = unique("dup")[:32]
    a = elb.create_load_balancer(Name=name, Subnets=["subnet-1"])["LoadBalancers"][0]
    b = elb.create_load_balancer(Name=name, Subnets=["subnet-1"])["LoadBalancers"][0]
    assert a["LoadBalancerArn"] == b["LoadBalancerArn"]
    with pytest.raises(elb.exceptions.DuplicateLoadBalancerNameException) as e:
        elb.create_load_balancer(Name=name, Subnets=["subnet-2"])
    assert code_of(e) == "DuplicateLoadBalancerName"

    tg = new_tg(elb, Name=name)
    assert new_tg(elb, Name=name)["TargetGroupArn"] == tg["TargetGroupArn"]
    with pytest.raises(elb.exceptions.DuplicateTargetGroupNameException) as e:
        new_tg(elb, Name=name, Port=9090)
    assert code_of(e) == "DuplicateTargetGroupName"


def test_target_group_defaults_and_attributes(elb):
    tg = new_tg(elb, ProtocolVersion="HTTP2")
    assert tg["TargetType"] == "ip" and tg["ProtocolVersion"] == "HTTP2"
    assert (tg["HealthCheckProtocol"], tg["HealthCheckPort"], tg["HealthCheckPath"]) == ("HTTP", "traffic-port", "/")
    assert (tg["HealthCheckIntervalSeconds"], tg["HealthCheckTimeoutSeconds"]) == (30, 5)
    assert (tg["HealthyThresholdCount"], tg["UnhealthyThresholdCount"]) == (5, 2)
    assert tg["HealthCheckEnabled"] is True and tg["Matcher"] == {"HttpCode": "200"}
    assert tg["LoadBalancerArns"] == []

    attrs = {a["Key"]: a["Value"] for a in elb.describe_target_group_attributes(TargetGroupArn=tg["TargetGroupArn"])["Attributes"]}
    assert attrs["deregistration_delay.timeout_seconds"] == "300"
    assert attrs["load_balancing.algorithm.type"] == "round_robin"
    assert attrs["stickiness.enabled"] == "false"
    out = elb.modify_target_group_attributes(
        TargetGroupArn=tg["TargetGroupArn"],
        Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": "10"},
            {"Key": "load_balancing.algorithm.type", "Value": "least_outstanding_requests"},
        ],
    )["Attributes"]
    attrs = {a["Key"]: a["Value"] for a in out}
    assert attrs["deregistration_delay.timeout_seconds"] == "10"
    assert attrs["load_balancing.algorithm.type"] == "least_outstanding_requests"
    with pytest.raises(ClientError) as e:
        elb.modify_target_group_attributes(
            TargetGroupArn=tg["TargetGroupArn"],
            Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "4000"}],
        )
    assert code_of(e) == "ValidationError"

    modified = elb.modify_target_group(
        TargetGroupArn=tg["TargetGroupArn"], HealthCheckPath="/ready", HealthCheckIntervalSeconds=10,
        HealthCheckTimeoutSeconds=3, Matcher={"HttpCode": "200,204"},
    )["TargetGroups"][0]
    assert (modified["HealthCheckPath"], modified["HealthCheckIntervalSeconds"]) == ("/ready", 10)
    assert modified["Matcher"] == {"HttpCode": "200,204"}
    for bad in (
        dict(HealthCheckIntervalSeconds=10, HealthCheckTimeoutSeconds=10),
        dict(Matcher={"GrpcCode": "12"}),
        dict(HealthCheckEnabled=False),
    ):
        with pytest.raises(ClientError) as e:
            elb.modify_target_group(TargetGroupArn=tg["TargetGroupArn"], **bad)
        assert code_of(e) == "ValidationError", bad

    lb = new_lb(elb)
    attrs = {a["Key"]: a["Value"] for a in elb.describe_load_balancer_attributes(LoadBalancerArn=lb["LoadBalancerArn"])["Attributes"]}
    assert attrs["idle_timeout.timeout_seconds"] == "60"
    assert attrs["routing.http2.enabled"] == "true"
    assert attrs["deletion_protection.enabled"] == "false"
    elb.modify_load_balancer_attributes(
        LoadBalancerArn=lb["LoadBalancerArn"], Attributes=[{"Key": "deletion_protection.enabled", "Value": "true"}]
    )
    with pytest.raises(elb.exceptions.OperationNotPermittedException) as e:
        elb.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])
    assert code_of(e) == "OperationNotPermitted"
    elb.modify_load_balancer_attributes(
        LoadBalancerArn=lb["LoadBalancerArn"], Attributes=[{"Key": "deletion_protection.enabled", "Value": "false"}]
    )
    elb.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])
    # Deleting what is gone succeeds, as ELBv2 answers.
    elb.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])
    elb.get_waiter("load_balancers_deleted").wait(LoadBalancerArns=[lb["LoadBalancerArn"]])


def test_unsupported_kinds_are_validation_errors(elb):
    cases = [
        (elb.create_load_balancer, dict(Name=unique("n")[:32], Type="network"), "application load balancers"),
        (elb.create_load_balancer, dict(Name="internal-x"), "internal-"),
        (elb.create_load_balancer, dict(Name=unique("n")[:32], IpAddressType="dualstack"), "IPv4"),
        (elb.create_target_group, dict(Name=unique("t")[:32], Protocol="HTTP", Port=80, TargetType="instance"), "register by IP"),
        (elb.create_target_group, dict(Name=unique("t")[:32], Protocol="HTTP", Port=80, ProtocolVersion="GRPC"), "GRPC"),
        (elb.create_target_group, dict(Name=unique("t")[:32], Protocol="TCP", Port=80), "HTTP or HTTPS"),
        (elb.create_target_group, dict(Name=unique("t")[:32], Protocol="HTTP"), "Port"),
    ]
    for op, args, words in cases:
        with pytest.raises(ClientError) as e:
            op(**args)
        code, status, message = error_of(e)
        assert (code, status) == ("ValidationError", 400), (args, e.value.response)
        assert words in message, (args, message)


def test_rule_round_trip_renders_both_forms(elb):
    lb = new_lb(elb)
    a, b = new_tg(elb), new_tg(elb)
    listener = new_listener(elb, lb["LoadBalancerArn"], a["TargetGroupArn"])
    conditions = [
        {"Field": "path-pattern", "Values": ["/img/*"]},
        {"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": "X-Env", "Values": ["blue"]}},
        {"Field": "http-request-method", "HttpRequestMethodConfig": {"Values": ["GET"]}},
        {"Field": "query-string", "QueryStringConfig": {"Values": [{"Key": "v", "Value": "2"}]}},
        {"Field": "source-ip", "SourceIpConfig": {"Values": ["192.168.0.0/16"]}},
    ]
    weighted = [{
        "Type": "forward",
        "ForwardConfig": {
            "TargetGroups": [
                {"TargetGroupArn": a["TargetGroupArn"], "Weight": 3},
                {"TargetGroupArn": b["TargetGroupArn"], "Weight": 1},
            ],
            "TargetGroupStickinessConfig": {"Enabled": True, "DurationSeconds": 60},
        },
    }]
    r1 = elb.create_rule(ListenerArn=listener["ListenerArn"], Priority=10, Conditions=conditions, Actions=weighted)["Rules"][0]
    assert r1["Conditions"] == [
        {"Field": "path-pattern", "Values": ["/img/*"], "PathPatternConfig": {"Values": ["/img/*"]}},
        conditions[1], conditions[2], conditions[3], conditions[4],
    ]
    assert r1["Actions"] == weighted
    redirect = [{"Type": "redirect", "RedirectConfig": {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"}}]
    r2 = elb.create_rule(
        ListenerArn=listener["ListenerArn"], Priority=20,
        Conditions=[{"Field": "host-header", "HostHeaderConfig": {"Values": ["*.example.com"]}}], Actions=redirect,
    )["Rules"][0]
    assert r2["Actions"] == [{"Type": "redirect", "RedirectConfig": {
        "Protocol": "HTTPS", "Port": "443", "Host": "#{host}", "Path": "/#{path}", "Query": "#{query}", "StatusCode": "HTTP_301",
    }}]
    assert r2["Conditions"] == [{"Field": "host-header", "Values": ["*.example.com"], "HostHeaderConfig": {"Values": ["*.example.com"]}}]
    body = "<h1>down & out</h1> \"quoted\" 'single'"
    fixed = [{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "503", "ContentType": "text/html", "MessageBody": body}}]
    r3 = elb.create_rule(
        ListenerArn=listener["ListenerArn"], Priority=30,
        Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/maint"]}}], Actions=fixed,
    )["Rules"][0]
    assert r3["Actions"] == fixed  # XML escaping round trip

    rules = elb.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]
    assert [r["RuleArn"] for r in rules[:3]] == [r1["RuleArn"], r2["RuleArn"], r3["RuleArn"]]
    assert rules[:3] == [r1, r2, r3]
    default = rules[3]
    assert default["Priority"] == "default" and default["IsDefault"] is True and default["Conditions"] == []
    assert default["Actions"] == [{
        "Type": "forward", "TargetGroupArn": a["TargetGroupArn"],
        "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": a["TargetGroupArn"], "Weight": 1}],
                          "TargetGroupStickinessConfig": {"Enabled": False}},
    }]
    # Both groups now belong to this load balancer.
    tgs = elb.describe_target_groups(LoadBalancerArn=lb["LoadBalancerArn"])["TargetGroups"]
    assert sorted(t["TargetGroupArn"] for t in tgs) == sorted([a["TargetGroupArn"], b["TargetGroupArn"]])

    # Condition limits and unsupported features.
    too_many = [{"Field": "path-pattern", "Values": [f"/{i}" for i in range(6)]}]
    for conds, acts in (
        (too_many, forward(a["TargetGroupArn"])),
        ([{"Field": "path-pattern", "PathPatternConfig": {"RegexValues": ["^/x$"]}}], forward(a["TargetGroupArn"])),
        ([{"Field": "cookie", "Values": ["x"]}], forward(a["TargetGroupArn"])),
        ([{"Field": "path-pattern", "Values": ["/x"]}], [{"Type": "authenticate-oidc", "AuthenticateOidcConfig": {
            "Issuer": "i", "AuthorizationEndpoint": "a", "TokenEndpoint": "t", "UserInfoEndpoint": "u", "ClientId": "c"}}]),
        ([{"Field": "path-pattern", "Values": ["/x"]}], [{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "302"}}]),
    ):
        with pytest.raises(ClientError) as e:
            elb.create_rule(ListenerArn=listener["ListenerArn"], Priority=99, Conditions=conds, Actions=acts)
        assert code_of(e) == "ValidationError", conds
    with pytest.raises(elb.exceptions.InvalidLoadBalancerActionException):
        elb.create_rule(
            ListenerArn=listener["ListenerArn"], Priority=99, Conditions=[{"Field": "path-pattern", "Values": ["/x"]}],
            Actions=[{"Type": "redirect", "RedirectConfig": {"StatusCode": "HTTP_302"}}],
        )


def test_priorities_and_the_default_rule(elb):
    lb = new_lb(elb)
    tg = new_tg(elb)
    listener = new_listener(elb, lb["LoadBalancerArn"], tg["TargetGroupArn"])
    mk = lambda prio, path: elb.create_rule(  # noqa: E731
        ListenerArn=listener["ListenerArn"], Priority=prio,
        Conditions=[{"Field": "path-pattern", "Values": [path]}], Actions=forward(tg["TargetGroupArn"]),
    )["Rules"][0]
    r1, r2 = mk(1, "/one"), mk(2, "/two")
    with pytest.raises(elb.exceptions.PriorityInUseException) as e:
        mk(1, "/three")
    assert code_of(e) == "PriorityInUse"

    swapped = elb.set_rule_priorities(RulePriorities=[
        {"RuleArn": r1["RuleArn"], "Priority": 2}, {"RuleArn": r2["RuleArn"], "Priority": 1},
    ])["Rules"]
    assert {r["RuleArn"]: r["Priority"] for r in swapped} == {r1["RuleArn"]: "2", r2["RuleArn"]: "1"}
    with pytest.raises(elb.exceptions.PriorityInUseException):
        elb.set_rule_priorities(RulePriorities=[{"RuleArn": r1["RuleArn"], "Priority": 1}])
    rules = elb.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]
    assert [(r["RuleArn"], r["Priority"]) for r in rules[:2]] == [(r2["RuleArn"], "1"), (r1["RuleArn"], "2")]

    default_arn = rules[-1]["RuleArn"]
    assert elb.describe_rules(RuleArns=[default_arn])["Rules"][0]["IsDefault"] is True
    with pytest.raises(elb.exceptions.OperationNotPermittedException) as e:
        elb.delete_rule(RuleArn=default_arn)
    assert code_of(e) == "OperationNotPermitted"
    with pytest.raises(elb.exceptions.OperationNotPermittedException):
        elb.set_rule_priorities(RulePriorities=[{"RuleArn": default_arn, "Priority": 7}])
    fixed = [{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404", "ContentType": "text/plain", "MessageBody": "no"}}]
    out = elb.modify_rule(RuleArn=default_arn, Actions=fixed)["Rules"][0]
    assert out["IsDefault"] is True and out["Actions"] == fixed
    assert elb.describe_listeners(ListenerArns=[listener["ListenerArn"]])["Listeners"][0]["DefaultActions"] == fixed

    out = elb.modify_rule(RuleArn=r1["RuleArn"], Conditions=[{"Field": "path-pattern", "Values": ["/uno"]}])["Rules"][0]
    assert out["Conditions"][0]["Values"] == ["/uno"] and out["Priority"] == "2"
    elb.delete_rule(RuleArn=r1["RuleArn"])
    with pytest.raises(elb.exceptions.RuleNotFoundException) as e:
        elb.delete_rule(RuleArn=r1["RuleArn"])
    assert code_of(e) == "RuleNotFound"


def test_ports_are_claimed_across_load_balancers(elb, inst: BerthProcess):
    a, b = new_lb(elb), new_lb(elb)
    tga, tgb = new_tg(elb), new_tg(elb)
    port = next_port()
    la = new_listener(elb, a["LoadBalancerArn"], tga["TargetGroupArn"], port)
    # The same listener again: returned as it is.
    assert new_listener(elb, a["LoadBalancerArn"], tga["TargetGroupArn"], port)["ListenerArn"] == la["ListenerArn"]
    with pytest.raises(elb.exceptions.DuplicateListenerException) as e:
        elb.create_listener(LoadBalancerArn=a["LoadBalancerArn"], Protocol="HTTP", Port=port, DefaultActions=[
            {"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "200"}}])
    assert code_of(e) == "DuplicateListener"
    with pytest.raises(elb.exceptions.InvalidConfigurationRequestException) as e:
        new_listener(elb, b["LoadBalancerArn"], tgb["TargetGroupArn"], port)
    code, _, message = error_of(e)
    assert str(port) in message and a["LoadBalancerName"] in message and "another port" in message, message
    api_port = int(urllib.parse.urlsplit(inst.endpoint).port)
    with pytest.raises(elb.exceptions.InvalidConfigurationRequestException) as e:
        new_listener(elb, b["LoadBalancerArn"], tgb["TargetGroupArn"], api_port)
    assert "Berth API" in error_of(e)[2]
    with pytest.raises(elb.exceptions.UnsupportedProtocolException):
        elb.create_listener(LoadBalancerArn=b["LoadBalancerArn"], Protocol="TCP", Port=next_port(), DefaultActions=forward(tgb["TargetGroupArn"]))
    with pytest.raises(elb.exceptions.TargetGroupAssociationLimitException):
        new_listener(elb, b["LoadBalancerArn"], tga["TargetGroupArn"])

    # Moving a's listener frees the port for b.
    moved = elb.modify_listener(ListenerArn=la["ListenerArn"], Port=next_port())["Listeners"][0]
    assert moved["Port"] != port
    lb_ = new_listener(elb, b["LoadBalancerArn"], tgb["TargetGroupArn"], port)
    assert lb_["Port"] == port
    listed = elb.describe_listeners(LoadBalancerArn=b["LoadBalancerArn"])["Listeners"]
    assert [l["ListenerArn"] for l in listed] == [lb_["ListenerArn"]]
    elb.delete_listener(ListenerArn=lb_["ListenerArn"])
    with pytest.raises(elb.exceptions.ListenerNotFoundException) as e:
        elb.delete_listener(ListenerArn=lb_["ListenerArn"])
    assert code_of(e) == "ListenerNotFound"


def test_https_listeners_need_certificate_files(elb, inst: BerthProcess):
    lb, tg = new_lb(elb), new_tg(elb)
    name = unique("site")
    cert = f"arn:aws:acm:{inst.region}:{inst.account}:certificate/{name}"
    with pytest.raises(ClientError) as e:
        elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTPS", Port=next_port(), DefaultActions=forward(tg["TargetGroupArn"]))
    assert code_of(e) == "ValidationError"
    with pytest.raises(elb.exceptions.CertificateNotFoundException) as e:
        elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTPS", Port=next_port(),
                            Certificates=[{"CertificateArn": cert}], DefaultActions=forward(tg["TargetGroupArn"]))
    message = error_of(e)[2]
    certs = inst.data_dir / "certs"
    assert str(certs / f"{name}.crt") in message and str(certs / f"{name}.key") in message, message
    certs.mkdir(exist_ok=True)
    (certs / f"{name}.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    (certs / f"{name}.key").write_text("-----BEGIN PRIVATE KEY-----\n")
    l = elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTPS", Port=next_port(),
                            Certificates=[{"CertificateArn": cert}], DefaultActions=forward(tg["TargetGroupArn"]))["Listeners"][0]
    assert l["Protocol"] == "HTTPS" and l["Certificates"] == [{"CertificateArn": cert}]
    assert l["SslPolicy"] == "ELBSecurityPolicy-2016-08"
    with pytest.raises(elb.exceptions.SSLPolicyNotFoundException):
        elb.modify_listener(ListenerArn=l["ListenerArn"], SslPolicy="Modern")
    http = elb.modify_listener(ListenerArn=l["ListenerArn"], Protocol="HTTP")["Listeners"][0]
    assert http["Protocol"] == "HTTP" and "Certificates" not in http and "SslPolicy" not in http


def test_targets_health_and_draining(elb, inst: BerthProcess):
    tg = new_tg(elb, Port=80)
    arn = tg["TargetGroupArn"]
    t1, t2 = ip(inst, 10), ip(inst, 11)
    elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": t1}, {"Id": t2, "Port": 8081}, {"Id": "127.0.0.1", "Port": 9000}])
    elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": t1}])  # again: a no-op
    health = elb.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
    assert sorted((h["Target"]["Id"], h["Target"]["Port"], h["HealthCheckPort"]) for h in health) == sorted(
        [(t1, 80, "80"), (t2, 8081, "8081"), ("127.0.0.1", 9000, "9000")]
    )
    assert {h["TargetHealth"]["State"] for h in health} == {"unused"}

    # Used by a listener: registration in progress until the data path checks.
    lb = new_lb(elb)
    new_listener(elb, lb["LoadBalancerArn"], arn)
    health = elb.describe_target_health(TargetGroupArn=arn, Targets=[{"Id": t1}])["TargetHealthDescriptions"]
    assert health[0]["TargetHealth"] == {
        "State": "initial", "Reason": "Elb.RegistrationInProgress", "Description": "Target registration is in progress",
    }
    # Deregistered with the default 300 s delay: draining.
    elb.deregister_targets(TargetGroupArn=arn, Targets=[{"Id": t1}])
    health = elb.describe_target_health(TargetGroupArn=arn, Targets=[{"Id": t1, "Port": 80}])["TargetHealthDescriptions"]
    assert health[0]["TargetHealth"]["State"] == "draining"
    assert health[0]["TargetHealth"]["Reason"] == "Target.DeregistrationInProgress"
    # Registering it again ends the drain.
    elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": t1}])
    health = elb.describe_target_health(TargetGroupArn=arn, Targets=[{"Id": t1, "Port": 80}])["TargetHealthDescriptions"]
    assert health[0]["TargetHealth"]["State"] == "initial"
    # Never registered: unused, Target.NotRegistered.
    health = elb.describe_target_health(TargetGroupArn=arn, Targets=[{"Id": ip(inst, 99), "Port": 80}])["TargetHealthDescriptions"]
    assert health[0]["TargetHealth"]["State"] == "unused"
    assert health[0]["TargetHealth"]["Reason"] == "Target.NotRegistered"

    with pytest.raises(elb.exceptions.InvalidTargetException) as e:
        elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": "10.255.255.1"}])
    code, _, message = error_of(e)
    assert "10.255.255.1" in message and inst.task_network in message and "127.0.0.0/8" in message, message
    with pytest.raises(elb.exceptions.InvalidTargetException):
        elb.deregister_targets(TargetGroupArn=arn, Targets=[{"Id": ip(inst, 98)}])

    # Delay 0: deregistering removes at once, and the boto3 waiter agrees.
    elb.modify_target_group_attributes(TargetGroupArn=arn, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "0"}])
    elb.deregister_targets(TargetGroupArn=arn, Targets=[{"Id": t2, "Port": 8081}])
    elb.get_waiter("target_deregistered").wait(TargetGroupArn=arn, Targets=[{"Id": t2, "Port": 8081}])
    left = {h["Target"]["Id"] for h in elb.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]}
    assert left == {t1, "127.0.0.1"}


def test_target_group_in_use_cannot_be_deleted(elb):
    lb, tg = new_lb(elb), new_tg(elb)
    listener = new_listener(elb, lb["LoadBalancerArn"], tg["TargetGroupArn"])
    with pytest.raises(elb.exceptions.ResourceInUseException) as e:
        elb.delete_target_group(TargetGroupArn=tg["TargetGroupArn"])
    assert code_of(e) == "ResourceInUse" and listener["ListenerArn"] in error_of(e)[2]
    elb.delete_listener(ListenerArn=listener["ListenerArn"])
    elb.delete_target_group(TargetGroupArn=tg["TargetGroupArn"])
    elb.delete_target_group(TargetGroupArn=tg["TargetGroupArn"])  # gone already: fine
    with pytest.raises(elb.exceptions.TargetGroupNotFoundException) as e:
        elb.describe_target_groups(TargetGroupArns=[tg["TargetGroupArn"]])
    assert code_of(e) == "TargetGroupNotFound"
    with pytest.raises(elb.exceptions.TargetGroupNotFoundException):
        elb.register_targets(TargetGroupArn=tg["TargetGroupArn"], Targets=[{"Id": "10.0.0.1"}])
    with pytest.raises(elb.exceptions.TargetGroupNotFoundException):
        new_listener(elb, lb["LoadBalancerArn"], tg["TargetGroupArn"])


def test_tags_on_every_kind(elb):
    lb, tg = new_lb(elb, Tags=[{"Key": "a", "Value": "1"}]), new_tg(elb, Tags=[{"Key": "b", "Value": "2"}])
    listener = new_listener(elb, lb["LoadBalancerArn"], tg["TargetGroupArn"])
    rule = elb.create_rule(
        ListenerArn=listener["ListenerArn"], Priority=1, Conditions=[{"Field": "path-pattern", "Values": ["/t"]}],
        Actions=forward(tg["TargetGroupArn"]), Tags=[{"Key": "c", "Value": "3"}],
    )["Rules"][0]
    arns = [lb["LoadBalancerArn"], tg["TargetGroupArn"], listener["ListenerArn"], rule["RuleArn"]]
    elb.add_tags(ResourceArns=arns, Tags=[{"Key": "env", "Value": "test"}])
    got = {d["ResourceArn"]: {t["Key"]: t["Value"] for t in d["Tags"]} for d in elb.describe_tags(ResourceArns=arns)["TagDescriptions"]}
    assert got == {
        arns[0]: {"a": "1", "env": "test"},
        arns[1]: {"b": "2", "env": "test"},
        arns[2]: {"env": "test"},
        arns[3]: {"c": "3", "env": "test"},
    }
    elb.remove_tags(ResourceArns=arns, TagKeys=["env", "a"])
    got = {d["ResourceArn"]: d["Tags"] for d in elb.describe_tags(ResourceArns=arns)["TagDescriptions"]}
    assert got[arns[0]] == [] and got[arns[1]] == [{"Key": "b", "Value": "2"}]

    with pytest.raises(elb.exceptions.TooManyTagsException) as e:
        elb.add_tags(ResourceArns=[arns[1]], Tags=[{"Key": f"k{i}", "Value": ""} for i in range(50)])
    assert code_of(e) == "TooManyTags"
    with pytest.raises(elb.exceptions.DuplicateTagKeysException):
        elb.add_tags(ResourceArns=[arns[1]], Tags=[{"Key": "x", "Value": "1"}, {"Key": "x", "Value": "2"}])
    with pytest.raises(ClientError) as e:
        elb.describe_tags(ResourceArns=[arns[0]] * 21)
    assert code_of(e) == "ValidationError"
    gone = lb["LoadBalancerArn"].replace(lb["LoadBalancerName"], "gone-lb")
    with pytest.raises(elb.exceptions.LoadBalancerNotFoundException):
        elb.describe_tags(ResourceArns=[gone])


def test_pagination(elb):
    prefix = unique("pg")[:20]
    made = [new_tg(elb, Name=f"{prefix}-{i}")["TargetGroupArn"] for i in range(5)]
    seen, marker, pages = [], None, 0
    while True:
        kw = {"PageSize": 2}
        if marker:
            kw["Marker"] = marker
        out = elb.describe_target_groups(**kw)
        assert len(out["TargetGroups"]) <= 2
        seen += [t["TargetGroupArn"] for t in out["TargetGroups"]]
        pages += 1
        marker = out.get("NextMarker")
        if not marker:
            break
    assert pages >= 3 and len(seen) == len(set(seen))
    assert [a for a in seen if a in made] == made  # by name, each once
    paged = [t["TargetGroupArn"] for p in elb.get_paginator("describe_target_groups").paginate(PaginationConfig={"PageSize": 3}) for t in p["TargetGroups"]]
    assert paged == seen
    for bad in (dict(PageSize=401), dict(Marker="not-a-marker!")):
        with pytest.raises(ClientError) as e:
            elb.describe_target_groups(**bad)
        assert code_of(e) == "ValidationError", bad
    names = [f"{prefix}-1", f"{prefix}-3"]
    assert [t["TargetGroupName"] for t in elb.describe_target_groups(Names=names)["TargetGroups"]] == names
    with pytest.raises(elb.exceptions.TargetGroupNotFoundException):
        elb.describe_target_groups(Names=[f"{prefix}-1", f"{prefix}-nope"])


def test_not_found_and_malformed_arns(elb, inst: BerthProcess):
    base = f"arn:aws:elasticloadbalancing:{inst.region}:{inst.account}"
    cases = [
        (lambda: elb.describe_load_balancers(LoadBalancerArns=[f"{base}:loadbalancer/app/nope/0123456789abcdef"]), "LoadBalancerNotFound"),
        (lambda: elb.describe_listeners(LoadBalancerArn=f"{base}:loadbalancer/app/nope/0123456789abcdef"), "LoadBalancerNotFound"),
        (lambda: elb.describe_target_health(TargetGroupArn=f"{base}:targetgroup/nope/0123456789abcdef"), "TargetGroupNotFound"),
        (lambda: elb.describe_listeners(ListenerArns=[f"{base}:listener/app/nope/0123456789abcdef/0123456789abcdef"]), "ListenerNotFound"),
        (lambda: elb.describe_rules(RuleArns=[f"{base}:listener-rule/app/nope/0123456789abcdef/0123456789abcdef/1123456789abcdef"]), "RuleNotFound"),
        # Another region's ARN is well formed, just not here.
        (lambda: elb.describe_target_health(TargetGroupArn=f"arn:aws:elasticloadbalancing:xx-west-9:{inst.account}:targetgroup/t/0123456789abcdef"), "TargetGroupNotFound"),
    ]
    for call, want in cases:
        with pytest.raises(ClientError) as e:
            call()
        assert code_of(e) == want
    with pytest.raises(ClientError) as e:
        elb.describe_target_health(TargetGroupArn="not-an-arn")
    code, _, message = error_of(e)
    assert code == "ValidationError" and "TargetGroupArn" in message, message
    with pytest.raises(ClientError) as e:
        elb.describe_listeners()
    assert code_of(e) == "ValidationError"


# --------------------------------------------------------------------------
# The wire: raw Query requests
# --------------------------------------------------------------------------


def query(inst: BerthProcess, params: dict[str, str], *, method: str = "POST", service: str = "elasticloadbalancing", sign: bool = True):
    body = urllib.parse.urlencode(params).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    path = "/"
    if method == "GET":
        path, body, headers = "/?" + body.decode(), b"", {}
    endpoint = inst.env["AWS_ENDPOINT_URL"]
    if sign:
        req = botocore.awsrequest.AWSRequest(method=method, url=f"{endpoint}{path}", data=body, headers=headers)
        botocore.auth.SigV4Auth(inst.credentials, service, inst.region).add_auth(req)
        headers = dict(req.headers.items())
    r = _send(endpoint, method, path, headers, body)
    return r.status, ET.fromstring(r.body), r.headers


def test_raw_query_requests_and_errors(inst: BerthProcess, elb):
    lb = new_lb(elb)
    for method in ("POST", "GET"):
        status, doc, headers = query(inst, {"Action": "DescribeLoadBalancers", "Version": "2015-12-01", "Names.member.1": lb["LoadBalancerName"]}, method=method)
        assert status == 200, ET.tostring(doc)
        assert doc.tag == f"{NS}DescribeLoadBalancersResponse"
        assert headers["content-type"].startswith("text/xml")
        names = [e.text for e in doc.iter(f"{NS}LoadBalancerName")]
        assert names == [lb["LoadBalancerName"]]
        assert doc.find(f"{NS}ResponseMetadata/{NS}RequestId").text == headers["x-amzn-requestid"]

    status, doc, _ = query(inst, {"Action": "LaunchRockets", "Version": "2015-12-01"})
    assert status == 400 and doc.tag == f"{NS}ErrorResponse"
    assert doc.find(f"{NS}Error/{NS}Code").text == "InvalidAction"
    assert doc.find(f"{NS}Error/{NS}Type").text == "Sender"

    status, doc, _ = query(inst, {"Action": "DeleteLoadBalancer", "Version": "2015-12-01"})
    assert status == 400 and doc.find(f"{NS}Error/{NS}Code").text == "ValidationError"
    assert "LoadBalancerArn" in doc.find(f"{NS}Error/{NS}Message").text

    status, doc, _ = query(inst, {"Action": "CreateTargetGroup", "Version": "2015-12-01", "Name": unique("p")[:32], "Protocol": "HTTP", "Port": "eighty"})
    assert status == 400 and doc.find(f"{NS}Error/{NS}Code").text == "ValidationError"

    status, doc, _ = query(inst, {"Action": "DescribeLoadBalancers", "Version": "2012-06-01"})
    assert status == 400 and "2015-12-01" in doc.find(f"{NS}Error/{NS}Message").text

    # Unsigned: refused, in XML.
    status, doc, _ = query(inst, {"Action": "DescribeLoadBalancers", "Version": "2015-12-01"}, sign=False)
    assert status == 403 and doc.find(f"{NS}Error/{NS}Code").text == "MissingAuthenticationToken"
    # Signed for another service: refused, naming the right one.
    status, doc, _ = query(inst, {"Action": "DescribeLoadBalancers", "Version": "2015-12-01"}, service="ecs")
    assert status == 403 and "elasticloadbalancing" in doc.find(f"{NS}Error/{NS}Message").text
