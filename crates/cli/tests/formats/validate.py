"""Validates a document `granttrail findings` wrote in a standard format.

    validate.py sarif SCHEMA FILE   against the SARIF 2.1.0 JSON schema
    validate.py asff FILE           against botocore's Security Hub model and Security Hub's limits
    validate.py ocsf FILE           against the OCSF Detection Finding models of py-ocsf-models

Prints each problem and exits 1 when there is any, 0 when the document is valid.
"""

import json
import re
import sys
from datetime import datetime

problems = []


def problem(text):
    problems.append(text)


def sarif(schema_path, path):
    import jsonschema

    schema = json.load(open(schema_path))
    doc = json.load(open(path))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    for error in cls(schema).iter_errors(doc):
        problem(f"{'/'.join(map(str, error.absolute_path))}: {error.message}")


# Security Hub's documented limits that the service model does not carry.
ASFF_MAX_LENGTH = {
    "Id": 512,
    "GeneratorId": 512,
    "Title": 256,
    "Description": 1024,
    "ProductName": 128,
    "CompanyName": 128,
}
ASFF_TYPE_NAMESPACES = {
    "Software and Configuration Checks",
    "TTPs",
    "Effects",
    "Unusual Behaviors",
    "Sensitive Data Identifications",
}


def walk_shape(shape, value, where):
    """The model's own constraints (enum, pattern, min, max) that botocore's validator skips."""
    meta = shape.metadata
    if shape.type_name == "string" and isinstance(value, str):
        if "enum" in meta and value not in meta["enum"]:
            problem(f"{where}: {value!r} is not one of {meta['enum']}")
        if "pattern" in meta and not re.fullmatch(meta["pattern"], value, re.S):
            problem(f"{where}: {value!r} does not match {meta['pattern']}")
        if "max" in meta and len(value) > meta["max"]:
            problem(f"{where}: longer than {meta['max']}")
    elif shape.type_name == "structure" and isinstance(value, dict):
        for k, v in value.items():
            if k in shape.members:
                walk_shape(shape.members[k], v, f"{where}.{k}")
    elif shape.type_name == "list" and isinstance(value, list):
        for i, v in enumerate(value):
            walk_shape(shape.member, v, f"{where}[{i}]")
    elif shape.type_name == "map" and isinstance(value, dict):
        for k, v in value.items():
            walk_shape(shape.key, k, f"{where} key")
            walk_shape(shape.value, v, f"{where}.{k}")


def iso(text, where):
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        problem(f"{where}: {text!r} is not an ISO 8601 time")


def asff(path):
    import botocore.session
    from botocore.validate import ParamValidator

    doc = json.load(open(path))
    if not isinstance(doc, list):
        problem("not a JSON array of findings")
        return
    if len(doc) > 100:
        print(f"note: {len(doc)} findings: BatchImportFindings takes 100 per call", file=sys.stderr)
    model = botocore.session.get_session().get_service_model("securityhub")
    shape = model.operation_model("BatchImportFindings").input_shape
    report = ParamValidator().validate({"Findings": doc}, shape)
    if report.has_errors():
        problem(report.generate_report())
    finding_shape = shape.members["Findings"].member
    for i, f in enumerate(doc):
        where = f"Findings[{i}]"
        walk_shape(finding_shape, f, where)
        if f.get("SchemaVersion") != "2018-10-08":
            problem(f"{where}.SchemaVersion: {f.get('SchemaVersion')!r}")
        for field, limit in ASFF_MAX_LENGTH.items():
            if len(f.get(field, "")) > limit:
                problem(f"{where}.{field}: longer than {limit}")
        account = f.get("AwsAccountId", "")
        if not re.fullmatch(r"\d{12}", account):
            problem(f"{where}.AwsAccountId: {account!r}")
        arn = f.get("ProductArn", "")
        if not re.fullmatch(rf"arn:aws[a-z-]*:securityhub:[a-z0-9-]+:{account}:product/{account}/default", arn):
            problem(f"{where}.ProductArn: {arn!r} is not this account's default product")
        created = iso(f.get("CreatedAt"), f"{where}.CreatedAt")
        updated = iso(f.get("UpdatedAt"), f"{where}.UpdatedAt")
        if "FirstObservedAt" in f:
            iso(f["FirstObservedAt"], f"{where}.FirstObservedAt")
        if created and updated and updated < created:
            problem(f"{where}: UpdatedAt is before CreatedAt")
        types = f.get("Types", [])
        if not 1 <= len(types) <= 50:
            problem(f"{where}.Types: {len(types)} types")
        for t in types:
            parts = t.split("/")
            if not 2 <= len(parts) <= 3 or parts[0] not in ASFF_TYPE_NAMESPACES or len(t) > 128:
                problem(f"{where}.Types: {t!r} is not namespace/category/classifier")
        text = f.get("Remediation", {}).get("Recommendation", {}).get("Text", "")
        if len(text) > 512:
            problem(f"{where}.Remediation.Recommendation.Text: longer than 512")
        fields = f.get("ProductFields", {})
        if len(fields) > 50:
            problem(f"{where}.ProductFields: {len(fields)} pairs")
        for k, v in fields.items():
            if len(k) > 128 or len(v) > 2048:
                problem(f"{where}.ProductFields.{k}: too long")
        resources = f.get("Resources", [])
        if not 1 <= len(resources) <= 32:
            problem(f"{where}.Resources: {len(resources)} resources")
        for j, r in enumerate(resources):
            if len(r.get("Id", "")) > 512:
                problem(f"{where}.Resources[{j}].Id: longer than 512")
            other = r.get("Details", {}).get("Other", {})
            if len(other) > 50 or any(len(k) > 128 or len(v) > 1024 for k, v in other.items()):
                problem(f"{where}.Resources[{j}].Details.Other: beyond the limits")
        if not any(r.get("Type") == "AwsKmsKey" for r in resources):
            problem(f"{where}.Resources: no AwsKmsKey")


SEVERITY = {0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical", 6: "Fatal", 99: "Other"}
STATUS = {0: "Unknown", 1: "New", 2: "In Progress", 3: "Suppressed", 4: "Resolved", 5: "Archived", 99: "Other"}
ACTIVITY = {0: "Unknown", 1: "Create", 2: "Update", 3: "Close", 99: "Other"}


def dropped(given, kept, where):
    """Attributes the model does not know are silently dropped by pydantic: find them."""
    if isinstance(given, dict):
        if not isinstance(kept, dict):
            problem(f"{where}: not an object in the model")
            return
        for k, v in given.items():
            if k not in kept:
                problem(f"{where}.{k}: not an attribute of the class")
            elif k != "data":  # `data` objects are free-form
                dropped(v, kept[k], f"{where}.{k}")
    elif isinstance(given, list) and isinstance(kept, list):
        for i, (a, b) in enumerate(zip(given, kept)):
            dropped(a, b, f"{where}[{i}]")


def ocsf(path):
    from pydantic import ValidationError
    from py_ocsf_models import OCSF_VERSION
    from py_ocsf_models.events.findings.detection_finding import DetectionFinding

    doc = json.load(open(path))
    if not isinstance(doc, list):
        problem("not a JSON array of events")
        return
    for i, event in enumerate(doc):
        where = f"[{i}]"
        try:
            model = DetectionFinding.model_validate(event)
        except ValidationError as e:
            problem(f"{where}: {e}")
            continue
        dropped(event, model.model_dump(mode="json", exclude_unset=True), where)
        expected = {"class_uid": 2004, "category_uid": 2, "class_name": "Detection Finding", "category_name": "Findings"}
        for k, v in expected.items():
            if event.get(k) != v:
                problem(f"{where}.{k}: {event.get(k)!r}, expected {v!r}")
        if event.get("type_uid") != 2004 * 100 + event.get("activity_id", -1):
            problem(f"{where}.type_uid: not class_uid * 100 + activity_id")
        for field, captions in [("severity", SEVERITY), ("status", STATUS), ("activity_name", ACTIVITY)]:
            id_field = "activity_id" if field == "activity_name" else f"{field}_id"
            if field in event and captions.get(event.get(id_field)) != event[field]:
                problem(f"{where}.{field}: {event[field]!r} is not the caption of {id_field} {event.get(id_field)!r}")
        if event.get("metadata", {}).get("version") != OCSF_VERSION:
            problem(f"{where}.metadata.version: not {OCSF_VERSION}")
        for field in ["time", "start_time"]:
            if field in event and not 10**12 <= event[field] < 10**14:
                problem(f"{where}.{field}: not milliseconds since the epoch")


def main():
    kind = sys.argv[1]
    if kind == "sarif":
        sarif(sys.argv[2], sys.argv[3])
    elif kind == "asff":
        asff(sys.argv[2])
    elif kind == "ocsf":
        ocsf(sys.argv[2])
    else:
        sys.exit(f"unknown format {kind}")
    for p in problems:
        print(p)
    sys.exit(1 if problems else 0)


main()
