"""Clusters through the AWS CLI and boto3."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from conftest import error_of, unique


def test_default_cluster_exists(aws, berth):
    out = aws.ok("ecs", "describe-clusters", "--clusters", "default")
    assert out["failures"] == []
    [c] = out["clusters"]
    assert c["clusterName"] == "default"
    assert c["clusterArn"] == berth.cluster_arn("default")
    assert c["status"] == "ACTIVE"

    listed = aws.ok("ecs", "list-clusters")
    assert berth.cluster_arn("default") in listed["clusterArns"]


def test_describe_without_clusters_is_the_default_cluster(ecs, berth):
    out = ecs.describe_clusters()
    assert [c["clusterArn"] for c in out["clusters"]] == [berth.cluster_arn("default")]


def test_create_cluster_cli_is_idempotent(aws, berth):
    name = unique("cli")
    first = aws.ok("ecs", "create-cluster", "--cluster-name", name)["cluster"]
    assert first["clusterName"] == name
    assert first["clusterArn"] == berth.cluster_arn(name)
    assert first["status"] == "ACTIVE"
    for counter in (
        "registeredContainerInstancesCount",
        "runningTasksCount",
        "pendingTasksCount",
        "activeServicesCount",
    ):
        assert first[counter] == 0, counter

    second = aws.ok("ecs", "create-cluster", "--cluster-name", name)["cluster"]
    assert second["clusterArn"] == first["clusterArn"]
    assert second["status"] == "ACTIVE"

    listed = aws.ok("ecs", "list-clusters")["clusterArns"]
    assert listed.count(first["clusterArn"]) == 1


def test_describe_includes_tags_and_settings_only_on_request(ecs, berth):
    name = unique("incl")
    ecs.create_cluster(
        clusterName=name,
        tags=[{"key": "team", "value": "blue"}, {"key": "env", "value": "test"}],
        settings=[{"name": "containerInsights", "value": "enabled"}],
    )

    plain = ecs.describe_clusters(clusters=[name])["clusters"][0]
    assert not plain.get("tags")
    assert not plain.get("settings")

    tagged = ecs.describe_clusters(clusters=[name], include=["TAGS"])["clusters"][0]
    assert sorted((t["key"], t["value"]) for t in tagged["tags"]) == [("env", "test"), ("team", "blue")]
    assert not tagged.get("settings")

    settings = ecs.describe_clusters(clusters=[name], include=["SETTINGS"])["clusters"][0]
    assert settings["settings"] == [{"name": "containerInsights", "value": "enabled"}]
    assert not settings.get("tags")

    everything = ecs.describe_clusters(
        clusters=[berth.cluster_arn(name)],
        include=["ATTACHMENTS", "CONFIGURATIONS", "SETTINGS", "STATISTICS", "TAGS"],
    )
    assert everything["failures"] == []
    [c] = everything["clusters"]
    assert c["clusterArn"] == berth.cluster_arn(name)
    assert len(c["tags"]) == 2
    assert c["settings"] == [{"name": "containerInsights", "value": "enabled"}]


def test_describe_include_tags_cli(aws):
    name = unique("incl-cli")
    aws.ok("ecs", "create-cluster", "--cluster-name", name, "--tags", "key=owner,value=me")
    out = aws.ok("ecs", "describe-clusters", "--clusters", name, "--include", "TAGS")
    assert out["clusters"][0]["tags"] == [{"key": "owner", "value": "me"}]


def test_describe_missing_cluster_reports_failure(aws, ecs, berth):
    missing = unique("missing")
    out = aws.ok("ecs", "describe-clusters", "--clusters", missing)
    assert out["clusters"] == []
    assert out["failures"] == [{"arn": berth.cluster_arn(missing), "reason": "MISSING"}]

    present = unique("present")
    ecs.create_cluster(clusterName=present)
    mixed = ecs.describe_clusters(clusters=[present, missing])
    assert [c["clusterName"] for c in mixed["clusters"]] == [present]
    assert [(f["arn"], f["reason"]) for f in mixed["failures"]] == [(berth.cluster_arn(missing), "MISSING")]


def test_list_clusters_contains_created(aws, berth):
    name = unique("listed")
    aws.ok("ecs", "create-cluster", "--cluster-name", name)
    arns = aws.ok("ecs", "list-clusters")["clusterArns"]
    assert berth.cluster_arn(name) in arns
    assert berth.cluster_arn("default") in arns


@pytest.fixture(scope="module")
def five_clusters(ecs, berth):
    prefix = unique("page")
    names = [f"{prefix}-{i}" for i in range(5)]
    for n in names:
        ecs.create_cluster(clusterName=n)
    return [berth.cluster_arn(n) for n in names]


def test_list_clusters_pagination_with_next_token(ecs, five_clusters):
    pages = []
    kwargs = {"maxResults": 2}
    while True:
        out = ecs.list_clusters(**kwargs)
        assert len(out["clusterArns"]) <= 2
        pages.append(out["clusterArns"])
        token = out.get("nextToken")
        if not token:
            break
        kwargs["nextToken"] = token
        assert len(pages) < 1000, "pagination does not terminate"
    seen = [a for p in pages for a in p]
    assert len(seen) == len(set(seen)), f"duplicates across pages: {pages}"
    assert set(five_clusters) <= set(seen)
    # With at least 6 clusters (default + 5) and pages of 2, there are >= 3 pages.
    assert len(pages) >= 3
    # The unpaginated listing is the same set.
    assert set(ecs.list_clusters()["clusterArns"]) == set(seen)


def test_list_clusters_boto3_paginator(ecs, five_clusters):
    paginator = ecs.get_paginator("list_clusters")
    pages = list(paginator.paginate(PaginationConfig={"PageSize": 2}))
    assert all(len(p["clusterArns"]) <= 2 for p in pages)
    seen = [a for p in pages for a in p["clusterArns"]]
    assert len(seen) == len(set(seen))
    assert set(five_clusters) <= set(seen)


def test_list_clusters_cli_auto_paginates(aws, five_clusters):
    out = aws.ok("ecs", "list-clusters", "--page-size", "2")
    assert set(five_clusters) <= set(out["clusterArns"])


@pytest.mark.parametrize("max_results", [0, 101])
def test_list_clusters_invalid_max_results(raw, max_results):
    r = raw.send("ListClusters", {"maxResults": max_results})
    assert r.status == 400, r
    assert r.type == "InvalidParameterException", r


def test_list_clusters_invalid_next_token(raw):
    r = raw.send("ListClusters", {"nextToken": "!!! not a token !!!"})
    assert 400 <= r.status < 500, r
    assert r.type == "InvalidParameterException", r


def test_delete_cluster_lifecycle(aws, ecs, berth):
    name = unique("del")
    arn = berth.cluster_arn(name)
    aws.ok("ecs", "create-cluster", "--cluster-name", name)

    deleted = aws.ok("ecs", "delete-cluster", "--cluster", name)["cluster"]
    assert deleted["clusterArn"] == arn
    assert deleted["status"] == "INACTIVE"

    described = ecs.describe_clusters(clusters=[name])
    assert [(c["clusterArn"], c["status"]) for c in described["clusters"]] == [(arn, "INACTIVE")]
    assert arn not in ecs.list_clusters()["clusterArns"]

    with pytest.raises(ClientError) as e:
        ecs.delete_cluster(cluster=name)
    code, status, _ = error_of(e)
    assert (code, status) == ("ClusterNotFoundException", 400)

    again = aws("ecs", "delete-cluster", "--cluster", name)
    assert again.returncode != 0, str(again)
    assert "ClusterNotFoundException" in again.stderr

    # Creating it again brings it back.
    recreated = ecs.create_cluster(clusterName=name)["cluster"]
    assert (recreated["clusterArn"], recreated["status"]) == (arn, "ACTIVE")
    assert ecs.describe_clusters(clusters=[arn])["clusters"][0]["status"] == "ACTIVE"
    assert arn in ecs.list_clusters()["clusterArns"]


def test_delete_by_arn(ecs, berth):
    name = unique("del-arn")
    ecs.create_cluster(clusterName=name)
    out = ecs.delete_cluster(cluster=berth.cluster_arn(name))
    assert out["cluster"]["status"] == "INACTIVE"


def test_delete_missing_cluster(ecs):
    with pytest.raises(ClientError) as e:
        ecs.delete_cluster(cluster=unique("never"))
    code, status, _ = error_of(e)
    assert (code, status) == ("ClusterNotFoundException", 400)


def test_update_cluster_settings_cli(aws):
    name = unique("upd-cli")
    aws.ok("ecs", "create-cluster", "--cluster-name", name)
    out = aws.ok(
        "ecs", "update-cluster", "--cluster", name, "--settings", "name=containerInsights,value=enabled"
    )["cluster"]
    assert out["clusterName"] == name
    assert {"name": "containerInsights", "value": "enabled"} in out["settings"]
    described = aws.ok("ecs", "describe-clusters", "--clusters", name, "--include", "SETTINGS")
    assert described["clusters"][0]["settings"] == [{"name": "containerInsights", "value": "enabled"}]


@pytest.mark.parametrize("value", ["enabled", "disabled", "enhanced"])
def test_update_cluster_settings_values(ecs, value):
    name = unique("upd")
    ecs.create_cluster(clusterName=name)
    out = ecs.update_cluster(cluster=name, settings=[{"name": "containerInsights", "value": value}])
    assert out["cluster"]["settings"] == [{"name": "containerInsights", "value": value}]
    d = ecs.describe_clusters(clusters=[name], include=["SETTINGS"])["clusters"][0]
    assert d["settings"] == [{"name": "containerInsights", "value": value}]


@pytest.mark.parametrize(
    "settings",
    [
        [{"name": "containerInsights", "value": "sometimes"}],
        [{"name": "notASetting", "value": "enabled"}],
    ],
    ids=["bad-value", "bad-name"],
)
def test_update_cluster_invalid_settings(ecs, settings):
    name = unique("upd-bad")
    ecs.create_cluster(clusterName=name)
    with pytest.raises(ClientError) as e:
        ecs.update_cluster(cluster=name, settings=settings)
    code, status, _ = error_of(e)
    assert (code, status) == ("InvalidParameterException", 400)


def test_update_missing_cluster(ecs):
    with pytest.raises(ClientError) as e:
        ecs.update_cluster(cluster=unique("never"), settings=[{"name": "containerInsights", "value": "enabled"}])
    code, status, _ = error_of(e)
    assert (code, status) == ("ClusterNotFoundException", 400)


@pytest.mark.parametrize(
    "name",
    ["has space", "slash/inside", "x" * 256, "emoji-\u2603", "dot.dot"],
    ids=["space", "slash", "too-long", "non-ascii", "dot"],
)
def test_create_cluster_invalid_name(ecs, name):
    with pytest.raises(ClientError) as e:
        ecs.create_cluster(clusterName=name)
    code, status, _ = error_of(e)
    assert (code, status) == ("InvalidParameterException", 400)


def test_create_cluster_invalid_name_cli(aws):
    r = aws("ecs", "create-cluster", "--cluster-name", "not valid!")
    assert r.returncode != 0, str(r)
    assert "InvalidParameterException" in r.stderr


def test_create_cluster_longest_valid_name(ecs, berth):
    name = ("n" * 245) + unique("")[1:]  # 255 characters
    assert len(name) == 255
    out = ecs.create_cluster(clusterName=name)["cluster"]
    assert out["clusterArn"] == berth.cluster_arn(name)
