#!/usr/bin/env python3
"""Generate mesoflow's Mesos v1 `.proto` files from the field table.

The table (`proto/tests/data/v1-fields.tsv`) lists every message, field, number, label and type of
the Mesos 1.11 v1 protos. This script turns the rows of the three files we speak (`mesos.proto`,
`scheduler/scheduler.proto`, `executor/executor.proto`) into proto2 text under `proto/proto/`.
Facts that the table does not carry are added here explicitly: `[default = ...]` values,
deprecation notes and the three `oneof` groups.

Run from the repository root after changing the table:

    python3 proto/tools/gen_mesos_protos.py

The output is committed, so building the crate never needs Python.
"""

import collections
import csv
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TSV = os.path.join(ROOT, "tests", "data", "v1-fields.tsv")
OUT = os.path.join(ROOT, "proto")

# Source file in the table -> (our path under proto/, package, imports).
FILES = {
    "include/mesos/v1/mesos.proto": ("mesos/v1/mesos.proto", "mesos.v1", []),
    "include/mesos/v1/scheduler/scheduler.proto": (
        "mesos/v1/scheduler/scheduler.proto",
        "mesos.v1.scheduler",
        ["mesos/v1/mesos.proto"],
    ),
    "include/mesos/v1/executor/executor.proto": (
        "mesos/v1/executor/executor.proto",
        "mesos.v1.executor",
        ["mesos/v1/mesos.proto"],
    ),
}

# proto2 `[default = ...]` values (Appendix A of the protocol brief). Unset fields read as these.
DEFAULTS = {
    "mesos.v1.FrameworkInfo.failover_timeout": "0.0",
    "mesos.v1.FrameworkInfo.checkpoint": "false",
    "mesos.v1.FrameworkInfo.role": '"*"',
    "mesos.v1.CommandInfo.shell": "true",
    "mesos.v1.CommandInfo.URI.extract": "true",
    "mesos.v1.Filters.refuse_seconds": "5.0",
    "mesos.v1.Environment.Variable.type": "VALUE",
    "mesos.v1.MasterInfo.port": "5050",
    "mesos.v1.AgentInfo.port": "5051",
    "mesos.v1.Resource.role": '"*"',
    "mesos.v1.HealthCheck.delay_seconds": "15.0",
    "mesos.v1.HealthCheck.interval_seconds": "10.0",
    "mesos.v1.HealthCheck.timeout_seconds": "20.0",
    "mesos.v1.HealthCheck.consecutive_failures": "3",
    "mesos.v1.HealthCheck.grace_period_seconds": "10.0",
    "mesos.v1.HealthCheck.HTTPCheckInfo.protocol": "IPv4",
    "mesos.v1.HealthCheck.TCPCheckInfo.protocol": "IPv4",
    "mesos.v1.NetworkInfo.IPAddress.protocol": "IPv4",
    "mesos.v1.CheckInfo.delay_seconds": "15.0",
    "mesos.v1.CheckInfo.interval_seconds": "10.0",
    "mesos.v1.CheckInfo.timeout_seconds": "20.0",
    "mesos.v1.Image.cached": "true",
    "mesos.v1.LinuxInfo.share_cgroups": "true",
    "mesos.v1.ContainerInfo.DockerInfo.network": "HOST",
    "mesos.v1.ContainerInfo.DockerInfo.privileged": "false",
}

# Deprecated fields get a comment (not `[deprecated = true]`: prost would then emit
# `#[deprecated]`, and decoding code that merely reads them would warn).
DEPRECATED = {
    "mesos.v1.FrameworkInfo.role": "use `roles` with the MULTI_ROLE capability",
    "mesos.v1.Resource.role": "use `reservations` (RESERVATION_REFINEMENT)",
    "mesos.v1.ExecutorInfo.source": "use `labels`",
    "mesos.v1.Image.Docker.credential": "use a Secret",
    "mesos.v1.LinuxInfo.capability_info": "use `effective_capabilities`",
    "mesos.v1.ContainerInfo.DockerInfo.volume_driver": "use Volume.Source.DockerVolume",
    "mesos.v1.scheduler.Response.reconcile_operations": "answers arrive as events since 1.8",
    "mesos.v1.scheduler.Response.ReconcileOperations.operation_statuses": "answers arrive as events since 1.8",
}

# Message -> (oneof name, member fields). The table shows members as `optional`.
ONEOFS = {
    "mesos.v1.scheduler.AttributeConstraint.Selector": (
        "selector",
        ["pseudoattribute_type", "attribute_name"],
    ),
    "mesos.v1.scheduler.AttributeConstraint.Predicate": (
        "predicate",
        ["exists", "not_exists", "text_equals", "text_not_equals", "text_matches", "text_not_matches"],
    ),
    "mesos.v1.Volume.Source.CSIVolume.VolumeCapability": ("access_type", ["block", "mount"]),
}


class Node:
    """A message or enum with its own rows and nested definitions, in table order."""

    def __init__(self, full, kind):
        self.full = full
        self.kind = kind  # "message" | "enum"
        self.rows = []
        self.children = collections.OrderedDict()


def split_name(full, package):
    assert full.startswith(package + "."), (full, package)
    return full[len(package) + 1 :].split(".")


def build_tree(rows, package):
    roots = collections.OrderedDict()
    kinds = {}
    for r in rows:
        kinds.setdefault(r["message"], "enum" if r["label"] == "enum" else "message")

    def node_for(full):
        parts = split_name(full, package)
        level = roots
        node = None
        for i in range(len(parts)):
            name = package + "." + ".".join(parts[: i + 1])
            if parts[i] not in level:
                level[parts[i]] = Node(name, kinds.get(name, "message"))
            node = level[parts[i]]
            level = node.children
        return node

    for r in rows:
        node_for(r["message"]).rows.append(r)
    return roots


def type_ref(t):
    if t.startswith("map<"):
        k, v = t[4:-1].split(",", 1)
        return "map<%s, %s>" % (type_ref(k), type_ref(v))
    if "." in t:
        return "." + t
    return t


def emit(node, indent, out):
    pad = "  " * indent
    short = node.full.rsplit(".", 1)[1]
    if node.kind == "enum":
        out.append("%senum %s {" % (pad, short))
        for r in node.rows:
            out.append("%s  %s = %s;" % (pad, r["field"], r["number"]))
        out.append("%s}" % pad)
        return
    out.append("%smessage %s {" % (pad, short))
    for child in node.children.values():
        if child.kind == "enum":
            emit(child, indent + 1, out)
    for child in node.children.values():
        if child.kind == "message":
            emit(child, indent + 1, out)
    oneof = ONEOFS.get(node.full)
    oneof_lines = []
    for r in node.rows:
        if r["field"] == "(none)":
            continue
        key = node.full + "." + r["field"]
        opts = []
        if key in DEFAULTS:
            opts.append("default = %s" % DEFAULTS[key])
        opt = (" [%s]" % ", ".join(opts)) if opts else ""
        if key in DEPRECATED:
            line_comment = "%s  // Deprecated: %s.\n" % (pad, DEPRECATED[key])
        else:
            line_comment = ""
        t = r["type"]
        if oneof and r["field"] in oneof[1]:
            oneof_lines.append("%s    %s %s = %s%s;" % (pad, type_ref(t), r["field"], r["number"], opt))
            continue
        label = "" if t.startswith("map<") else r["label"] + " "
        out.append("%s%s  %s%s %s = %s%s;" % (line_comment, pad, label, type_ref(t), r["field"], r["number"], opt))
    if oneof:
        out.append("%s  oneof %s {" % (pad, oneof[0]))
        out.extend(oneof_lines)
        out.append("%s  }" % pad)
    out.append("%s}" % pad)


def main():
    with open(TSV, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    by_file = collections.defaultdict(list)
    for r in rows:
        by_file[r["file"]].append(r)
    for src, (dst, package, imports) in FILES.items():
        out = [
            "// Generated by proto/tools/gen_mesos_protos.py from tests/data/v1-fields.tsv: do not edit.",
            "//",
            "// mesoflow's own description of the Mesos 1.11 v1 messages of package %s:" % package,
            "// names, numbers, labels and types equal the real ones (checked by tests/descriptors.rs).",
            "",
            'syntax = "proto2";',
            "",
            "package %s;" % package,
            "",
        ]
        for imp in imports:
            out.append('import "%s";' % imp)
        if imports:
            out.append("")
        tree = build_tree(by_file[src], package)
        for node in tree.values():
            emit(node, 0, out)
            out.append("")
        path = os.path.join(OUT, dst)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write("\n".join(out).rstrip("\n") + "\n")
        print("wrote %s" % os.path.relpath(path, ROOT), file=sys.stderr)


if __name__ == "__main__":
    main()
