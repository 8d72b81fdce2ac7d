#!/usr/bin/env python3
"""A stock gRPC client for the end-to-end tests: Python grpcio with its reflection and health
clients, nothing generated from okey's own sources. Message types come from the server's
reflection (grpc.reflection.v1alpha, the version grpcio-reflection asks for).

usage: stock_client.py TARGET COMMAND [ARGS...]
  services                       list the services reflection names
  health [SERVICE...]            grpc.health.v1 Check of each service
  call SERVICE METHOD [HEADER...] request as JSON on stdin (JSON may use {"$repeat": [text, n]})
  raw SERVICE METHOD HEX [HEADER...]  send these bytes as the request message
HEADER is name=value (repeat a name to send it several times).
Prints one JSON object: {"code": ..., "details": ..., "details_len": ..., "response": ...}.
"""

import json
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def expand(value):
    """Replace {"$repeat": [text, n]} by text * n, so a test can ask for a megabyte field."""
    if isinstance(value, dict):
        if set(value) == {"$repeat"}:
            text, count = value["$repeat"]
            return text * count
        return {k: expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v) for v in value]
    return value


def headers(args):
    out = []
    for a in args:
        name, _, value = a.partition("=")
        out.append((name, value))
    return out


def outcome(call):
    try:
        response = call()
    except grpc.RpcError as e:
        details = e.details() or ""
        return {
            "code": e.code().name,
            "details": details[:2000],
            "details_len": len(details),
        }
    return {"code": "OK", "details": "", "details_len": 0, "response": response}


def services(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    names = []
    for answer in stub.ServerReflectionInfo(iter([request])):
        names.extend(s.name for s in answer.list_services_response.service)
    return names


def health(channel, names):
    stub = health_pb2_grpc.HealthStub(channel)
    result = {}
    for name in names:
        r = outcome(
            lambda: health_pb2.HealthCheckResponse.ServingStatus.Name(
                stub.Check(health_pb2.HealthCheckRequest(service=name)).status
            )
        )
        result[name] = r["response"] if r["code"] == "OK" else r["code"]
    return result


def method_types(channel, service, method):
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    m = pool.FindServiceByName(service).FindMethodByName(method)
    return (
        message_factory.GetMessageClass(m.input_type),
        message_factory.GetMessageClass(m.output_type),
    )


def call(channel, service, method, request_json, metadata):
    request_type, response_type = method_types(channel, service, method)
    request = json_format.ParseDict(expand(json.loads(request_json or "{}")), request_type())
    rpc = channel.unary_unary(
        f"/{service}/{method}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_type.FromString,
    )
    return outcome(
        lambda: json_format.MessageToDict(
            rpc(request, metadata=metadata, timeout=30), preserving_proto_field_name=True
        )
    )


def raw(channel, service, method, body, metadata):
    rpc = channel.unary_unary(
        f"/{service}/{method}",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b.hex(),
    )
    return outcome(lambda: rpc(body, metadata=metadata, timeout=30))


def main(argv):
    target, command, args = argv[1], argv[2], argv[3:]
    with grpc.insecure_channel(target) as channel:
        if command == "services":
            result = {"services": services(channel)}
        elif command == "health":
            result = {"health": health(channel, args)}
        elif command == "call":
            result = call(channel, args[0], args[1], sys.stdin.read(), headers(args[2:]))
        elif command == "raw":
            result = raw(channel, args[0], args[1], bytes.fromhex(args[2]), headers(args[3:]))
        else:
            raise SystemExit(f"unknown command {command}")
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv)
