"""TagResource, UntagResource and ListTagsForResource."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from conftest import error_of, fargate_taskdef, unique


def tag_pairs(tags):
    return sorted((t["key"], t["value"]) for t in tags)


def test_cluster_tags_cli(aws, berth):
    name = unique("tagged")
    arn = berth.cluster_arn(name)
    aws.ok("ecs", "create-cluster", "--cluster-name", name)
    assert aws.ok("ecs", "list-tags-for-resource", "--resource-arn", arn)["tags"] == []

    aws.ok("ecs", "tag-resource", "--resource-arn", arn, "--tags", "key=team,value=blue", "key=env,value=dev")
    listed = aws.ok("ecs", "list-tags-for-resource", "--resource-arn", arn)["tags"]
    assert tag_pairs(listed) == [("env", "dev"), ("team", "blue")]

    aws.ok("ecs", "untag-resource", "--resource-arn", arn, "--tag-keys", "team")
    listed = aws.ok("ecs", "list-tags-for-resource", "--resource-arn", arn)["tags"]
    assert tag_pairs(listed) == [("env", "dev")]

    described = aws.ok("ecs", "describe-clusters", "--clusters", name, "--include", "TAGS")
    assert tag_pairs(described["clusters"][0]["tags"]) == [("env", "dev")]


def test_cluster_tags_boto3_overwrite_and_untag_missing_key(ecs, berth):
    name = unique("tagged")
    arn = berth.cluster_arn(name)
    ecs.create_cluster(clusterName=name, tags=[{"key": "a", "value": "1"}])
    ecs.tag_resource(resourceArn=arn, tags=[{"key": "a", "value": "2"}, {"key": "b", "value": ""}])
    assert tag_pairs(ecs.list_tags_for_resource(resourceArn=arn)["tags"]) == [("a", "2"), ("b", "")]
    # Untagging a key that is not there is not an error.
    ecs.untag_resource(resourceArn=arn, tagKeys=["not-there", "b"])
    assert tag_pairs(ecs.list_tags_for_resource(resourceArn=arn)["tags"]) == [("a", "2")]


def test_task_definition_tags(ecs, aws, berth):
    family = unique("tagged-td")
    ecs.register_task_definition(**fargate_taskdef(family), tags=[{"key": "origin", "value": "test"}])
    arn = berth.taskdef_arn(family, 1)
    assert tag_pairs(ecs.list_tags_for_resource(resourceArn=arn)["tags"]) == [("origin", "test")]

    ecs.tag_resource(resourceArn=arn, tags=[{"key": "owner", "value": "me"}])
    assert tag_pairs(ecs.list_tags_for_resource(resourceArn=arn)["tags"]) == [("origin", "test"), ("owner", "me")]

    ecs.untag_resource(resourceArn=arn, tagKeys=["origin"])
    assert tag_pairs(ecs.list_tags_for_resource(resourceArn=arn)["tags"]) == [("owner", "me")]

    out = aws.ok("ecs", "describe-task-definition", "--task-definition", f"{family}:1", "--include", "TAGS")
    assert out["tags"] == [{"key": "owner", "value": "me"}]
    assert out["taskDefinition"]["taskDefinitionArn"] == arn

    # Tags belong to the revision: a new revision starts with its own.
    ecs.register_task_definition(**fargate_taskdef(family))
    assert ecs.list_tags_for_resource(resourceArn=berth.taskdef_arn(family, 2))["tags"] == []


def test_tags_on_missing_cluster(ecs, berth):
    arn = berth.cluster_arn(unique("ghost"))
    for call in (
        lambda: ecs.tag_resource(resourceArn=arn, tags=[{"key": "k", "value": "v"}]),
        lambda: ecs.untag_resource(resourceArn=arn, tagKeys=["k"]),
        lambda: ecs.list_tags_for_resource(resourceArn=arn),
    ):
        with pytest.raises(ClientError) as e:
            call()
        assert error_of(e)[:2] == ("ClusterNotFoundException", 400)


def test_tags_on_missing_cluster_cli(aws, berth):
    r = aws("ecs", "list-tags-for-resource", "--resource-arn", berth.cluster_arn(unique("ghost")))
    assert r.returncode != 0, str(r)
    assert "ClusterNotFoundException" in r.stderr


def test_tags_on_missing_task_definition(ecs, berth):
    arn = berth.taskdef_arn(unique("ghost"), 1)
    for call in (
        lambda: ecs.tag_resource(resourceArn=arn, tags=[{"key": "k", "value": "v"}]),
        lambda: ecs.untag_resource(resourceArn=arn, tagKeys=["k"]),
        lambda: ecs.list_tags_for_resource(resourceArn=arn),
    ):
        with pytest.raises(ClientError) as e:
            call()
        assert error_of(e)[:2] == ("ResourceNotFoundException", 400)


@pytest.mark.parametrize("key", ["aws:reserved", "AWS:Reserved", "aws:"])
def test_aws_prefixed_tag_keys_rejected(ecs, berth, key):
    name = unique("awskey")
    arn = berth.cluster_arn(name)
    ecs.create_cluster(clusterName=name)
    with pytest.raises(ClientError) as e:
        ecs.tag_resource(resourceArn=arn, tags=[{"key": key, "value": "v"}])
    assert error_of(e)[:2] == ("InvalidParameterException", 400)
    assert ecs.list_tags_for_resource(resourceArn=arn)["tags"] == []


def test_aws_prefixed_tag_key_rejected_on_create(ecs):
    with pytest.raises(ClientError) as e:
        ecs.create_cluster(clusterName=unique("awskey"), tags=[{"key": "aws:x", "value": "v"}])
    assert error_of(e)[:2] == ("InvalidParameterException", 400)


@pytest.mark.parametrize(
    "arn",
    [
        "not-an-arn",
        "arn:aws:ecs:us-east-1",
        "arn:aws:ecs:us-east-1:123456789012:widget/thing",
        "arn:aws:s3:::bucket",
        "arn:aws:ecs:us-east-1:123456789012:task-definition/fam:notanumber",
    ],
    ids=["plain", "truncated", "unknown-type", "other-service", "bad-revision"],
)
def test_malformed_arns_rejected(ecs, arn):
    for call in (
        lambda: ecs.list_tags_for_resource(resourceArn=arn),
        lambda: ecs.tag_resource(resourceArn=arn, tags=[{"key": "k", "value": "v"}]),
        lambda: ecs.untag_resource(resourceArn=arn, tagKeys=["k"]),
    ):
        with pytest.raises(ClientError) as e:
            call()
        assert error_of(e)[:2] == ("InvalidParameterException", 400), arn
