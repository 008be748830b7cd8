"""Writes a CustomResourceDefinition version's openAPIV3Schema as a strict JSON Schema."""
import json, sys, yaml

crd_path, version, api_version, out = sys.argv[1:5]
crd = yaml.safe_load(open(crd_path))
schema = next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"]

def strict(node):
    if isinstance(node, dict):
        node.pop("description", None)
        for value in node.values():
            strict(value)
        # The API server refuses unknown fields under fieldValidation=Strict.
        if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
    elif isinstance(node, list):
        for value in node:
            strict(value)

strict(schema)
kind = crd["spec"]["names"]["kind"]
schema["properties"]["apiVersion"]["const"] = api_version
schema["properties"]["kind"]["const"] = kind
schema["required"] = ["apiVersion", "kind", "metadata", "spec"]
document = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$comment": f"{kind} {api_version}: the openAPIV3Schema of {crd['metadata']['name']} "
    "(Volcano v1.15.1, config/crd/volcano/bases/scheduling.volcano.sh_podgroups.yaml), "
    "descriptions dropped, unknown fields refused, apiVersion and kind fixed; see README.md",
    **schema,
}
with open(out, "w") as f:
    json.dump(document, f, indent=2, sort_keys=True)
    f.write("\n")
