"""The privilege-escalation methods that the analysis looks for, one entry per method.

The list follows the methods catalogued by Rhino Security Labs, with later additions
(SageMaker, CodeBuild, SSM, EC2 Instance Connect). Each method names the actions it needs,
and any one action of a step completes that step. It also names the resources those
actions must be allowed on: the principal itself, its own policies or groups, other users
or roles, or the roles that an AWS service may assume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Level = Literal["admin", "high", "standard"]
Target = Literal[
    "own_policies",
    "other_policies",
    "self",
    "own_groups",
    "other_groups",
    "any_group",
    "other_users",
    "other_roles",
    "service_roles",
    "instance_roles",
    "none",
]
Gain = Literal["self", "user", "role", "group", "grant"]


@dataclass(frozen=True)
class Step:
    actions: tuple[str, ...]  # any one of them completes the step
    target: Target


@dataclass(frozen=True)
class Method:
    id: str
    title: str
    steps: tuple[Step, ...]
    gain: Gain
    applies_to: tuple[str, ...] = ("user", "role")
    service: str | None = None  # the service principal a role must trust to be a target


def _s(*actions: str, target: Target = "none") -> Step:
    return Step(tuple(actions), target)


def _pass_role(service: str, *steps: Step, method_id: str, title: str) -> Method:
    return Method(
        method_id,
        title,
        (_s("iam:PassRole", target="service_roles"), *steps),
        "role",
        service=service,
    )


METHODS: tuple[Method, ...] = (
    Method(
        "CreatePolicyVersion",
        "publish a new default version of a managed policy attached to itself",
        (_s("iam:CreatePolicyVersion", target="own_policies"),),
        "self",
    ),
    Method(
        "SetDefaultPolicyVersion",
        "switch a managed policy attached to itself to another version",
        (_s("iam:SetDefaultPolicyVersion", target="own_policies"),),
        "self",
    ),
    Method(
        "AttachUserPolicy",
        "attach any managed policy to itself",
        (_s("iam:AttachUserPolicy", target="self"),),
        "self",
        ("user",),
    ),
    Method(
        "PutUserPolicy",
        "write an inline policy on itself",
        (_s("iam:PutUserPolicy", target="self"),),
        "self",
        ("user",),
    ),
    Method(
        "AttachGroupPolicy",
        "attach any managed policy to a group it belongs to",
        (_s("iam:AttachGroupPolicy", target="own_groups"),),
        "self",
        ("user",),
    ),
    Method(
        "PutGroupPolicy",
        "write an inline policy on a group it belongs to",
        (_s("iam:PutGroupPolicy", target="own_groups"),),
        "self",
        ("user",),
    ),
    Method(
        "AttachRolePolicy",
        "attach any managed policy to itself",
        (_s("iam:AttachRolePolicy", target="self"),),
        "self",
        ("role",),
    ),
    Method(
        "PutRolePolicy",
        "write an inline policy on itself",
        (_s("iam:PutRolePolicy", target="self"),),
        "self",
        ("role",),
    ),
    Method(
        "AddUserToGroup",
        "add itself to a more privileged group",
        (_s("iam:AddUserToGroup", target="any_group"),),
        "group",
        ("user",),
    ),
    Method(
        "CreateAccessKey",
        "create an access key for another user",
        (_s("iam:CreateAccessKey", target="other_users"),),
        "user",
    ),
    Method(
        "CreateLoginProfile",
        "set a console password on another user",
        (_s("iam:CreateLoginProfile", target="other_users"),),
        "user",
    ),
    Method(
        "UpdateLoginProfile",
        "change another user's console password",
        (_s("iam:UpdateLoginProfile", target="other_users"),),
        "user",
    ),
    Method(
        "UpdateAssumeRolePolicy",
        "rewrite a role's trust policy, then assume the role",
        (
            _s("iam:UpdateAssumeRolePolicy", target="other_roles"),
            _s("sts:AssumeRole", target="other_roles"),
        ),
        "role",
    ),
    _pass_role(
        "ec2.amazonaws.com",
        _s("ec2:RunInstances"),
        method_id="PassRole-EC2",
        title="launch an EC2 instance with the role's instance profile and read its credentials",
    ),
    _pass_role(
        "lambda.amazonaws.com",
        _s("lambda:CreateFunction"),
        _s(
            "lambda:InvokeFunction",
            "lambda:CreateEventSourceMapping",
            "lambda:AddPermission",
            "lambda:CreateFunctionUrlConfig",
        ),
        method_id="PassRole-Lambda",
        title="create a Lambda function running as the role and trigger it",
    ),
    _pass_role(
        "glue.amazonaws.com",
        _s("glue:CreateDevEndpoint"),
        method_id="PassRole-Glue",
        title="create a Glue development endpoint running as the role",
    ),
    _pass_role(
        "cloudformation.amazonaws.com",
        _s("cloudformation:CreateStack"),
        method_id="PassRole-CloudFormation",
        title="create a CloudFormation stack that runs as the role",
    ),
    _pass_role(
        "datapipeline.amazonaws.com",
        _s("datapipeline:CreatePipeline"),
        _s("datapipeline:PutPipelineDefinition"),
        method_id="PassRole-DataPipeline",
        title="create a Data Pipeline whose activities run as the role",
    ),
    _pass_role(
        "codebuild.amazonaws.com",
        _s("codebuild:CreateProject"),
        _s("codebuild:StartBuild", "codebuild:StartBuildBatch"),
        method_id="PassRole-CodeBuild",
        title="create and start a CodeBuild project running as the role",
    ),
    _pass_role(
        "sagemaker.amazonaws.com",
        _s("sagemaker:CreateNotebookInstance"),
        _s("sagemaker:CreatePresignedNotebookInstanceUrl"),
        method_id="PassRole-SageMakerNotebook",
        title="create a SageMaker notebook running as the role and open it",
    ),
    _pass_role(
        "sagemaker.amazonaws.com",
        _s("sagemaker:CreateTrainingJob"),
        method_id="PassRole-SageMakerTraining",
        title="run a SageMaker training job as the role",
    ),
    _pass_role(
        "sagemaker.amazonaws.com",
        _s("sagemaker:CreateProcessingJob"),
        method_id="PassRole-SageMakerProcessing",
        title="run a SageMaker processing job as the role",
    ),
    _pass_role(
        "ecs-tasks.amazonaws.com",
        _s("ecs:RegisterTaskDefinition"),
        _s("ecs:RunTask", "ecs:StartTask", "ecs:CreateService"),
        method_id="PassRole-ECS",
        title="run an ECS task as the role",
    ),
    _pass_role(
        "codestar.amazonaws.com",
        _s("codestar:CreateProject"),
        method_id="PassRole-CodeStar",
        title="create a CodeStar project that runs as the role",
    ),
    Method(
        "UpdateFunctionCode",
        "replace the code of an existing Lambda function that runs as a role",
        (_s("lambda:UpdateFunctionCode", target="service_roles"),),
        "role",
        service="lambda.amazonaws.com",
    ),
    Method(
        "UpdateDevEndpoint",
        "add an SSH key to an existing Glue development endpoint",
        (_s("glue:UpdateDevEndpoint", target="service_roles"),),
        "role",
        service="glue.amazonaws.com",
    ),
    Method(
        "UpdateStack",
        "update an existing CloudFormation stack that runs as a role",
        (
            _s(
                "cloudformation:UpdateStack",
                "cloudformation:CreateChangeSet",
                target="service_roles",
            ),
        ),
        "role",
        service="cloudformation.amazonaws.com",
    ),
    Method(
        "SageMakerPresignedUrl",
        "open an existing SageMaker notebook that runs as a role",
        (_s("sagemaker:CreatePresignedNotebookInstanceUrl", target="service_roles"),),
        "role",
        service="sagemaker.amazonaws.com",
    ),
    Method(
        "SSMSendCommand",
        "run commands on an EC2 instance and read its role's credentials",
        (_s("ssm:SendCommand", target="instance_roles"),),
        "role",
        service="ec2.amazonaws.com",
    ),
    Method(
        "SSMStartSession",
        "open a shell on an EC2 instance and read its role's credentials",
        (_s("ssm:StartSession", target="instance_roles"),),
        "role",
        service="ec2.amazonaws.com",
    ),
    Method(
        "EC2InstanceConnect",
        "push an SSH key to an EC2 instance and read its role's credentials",
        (
            _s(
                "ec2-instance-connect:SendSSHPublicKey",
                "ec2-instance-connect:SendSerialConsoleSSHPublicKey",
                target="instance_roles",
            ),
        ),
        "role",
        service="ec2.amazonaws.com",
    ),
    # Grants to other identities: no gain for the caller itself, but anyone who can act as
    # the target (or the caller, when it can assume the target role) gains.
    Method(
        "GrantUserPolicy",
        "attach or write policies on other users",
        (_s("iam:AttachUserPolicy", "iam:PutUserPolicy", target="other_users"),),
        "grant",
    ),
    Method(
        "GrantGroupPolicy",
        "attach or write policies on groups",
        (_s("iam:AttachGroupPolicy", "iam:PutGroupPolicy", target="other_groups"),),
        "grant",
    ),
    Method(
        "GrantRolePolicy",
        "attach or write policies on other roles",
        (_s("iam:AttachRolePolicy", "iam:PutRolePolicy", target="other_roles"),),
        "grant",
    ),
    Method(
        "GrantPolicyVersion",
        "publish new versions of managed policies attached to others",
        (_s("iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", target="other_policies"),),
        "grant",
    ),
    Method(
        "GrantGroupMembership",
        "add users to groups",
        (_s("iam:AddUserToGroup", target="any_group"),),
        "grant",
        ("role",),
    ),
)
