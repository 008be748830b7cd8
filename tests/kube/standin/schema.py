"""Objects checked against Kubernetes' OpenAPI schemas (the ones `kubernetes-validate` ships), and
the schemas' patch strategies (`x-kubernetes-patch-merge-key`) for strategic merge patches."""

import functools
import json
import os
import re

import jsonschema
import kubernetes_validate
from referencing import Registry, Resource

_ROOT = os.path.join(os.path.dirname(kubernetes_validate.__file__), 'kubernetes-json-schema')


def _schema_dir(version, strict):
    wanted = tuple(int(p) for p in version.split('.')[:2])
    found = []
    for name in os.listdir(_ROOT):
        match = re.fullmatch(r'v(\d+)\.(\d+)\.\d+-local', name)
        if match and (int(match.group(1)), int(match.group(2))) <= wanted:
            found.append(((int(match.group(1)), int(match.group(2))), name))
    if not found:
        raise ValueError(f'no schemas for Kubernetes {version}')
    name = max(found)[1]
    return os.path.join(_ROOT, name + ('-strict' if strict else ''))


@functools.lru_cache(maxsize=None)
def _definitions(version, strict):
    with open(os.path.join(_schema_dir(version, strict), '_definitions.json')) as f:
        return json.load(f)


def _file_name(api_version, kind):
    api = re.sub(r'^([^./]*)(?:\.[^/]*)?/', r'\1-', api_version)
    return f'{kind.lower()}-{api}.json'


@functools.lru_cache(maxsize=None)
def kind_schema(version, api_version, kind, strict=False):
    """The schema of a kind, or None for kinds Kubernetes does not define (custom resources)."""
    path = os.path.join(_schema_dir(version, strict), _file_name(api_version, kind))
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


@functools.lru_cache(maxsize=None)
def _validator(version, api_version, kind, strict):
    schema = kind_schema(version, api_version, kind, strict)
    if schema is None:
        return None
    registry = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(_definitions(version, strict)) @ registry
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def _field_path(path):
    out = ''
    for part in path:
        if isinstance(part, int):
            out += f'[{part}]'
        else:
            out += ('.' if out else '') + str(part)
    return out


def check(obj, version):
    """Type errors as (field, message) pairs, and unknown fields as dotted paths."""
    api_version, kind = obj.get('apiVersion', ''), obj.get('kind', '')
    loose = _validator(version, api_version, kind, False)
    if loose is None:
        return [], []
    errors = []
    for error in loose.iter_errors(obj):
        value = json.dumps(error.instance)
        if len(value) > 80:
            value = value[:77] + '...'
        errors.append((_field_path(error.absolute_path), f'Invalid value: {value}: {error.message}'))
    unknown = []
    strict = _validator(version, api_version, kind, True)
    for error in strict.iter_errors(obj):
        if error.validator == 'additionalProperties' and isinstance(error.instance, dict):
            allowed = set((error.schema.get('properties') or {}).keys())
            for key in error.instance:
                if key not in allowed:
                    unknown.append(list(error.absolute_path) + [key])
    return errors, unknown


def drop_field(obj, path):
    node = obj
    for part in path[:-1]:
        node = node[part]
    node.pop(path[-1], None)


def field_name(path):
    return _field_path(path)


class SchemaNode:
    """A position in a kind's schema, followed through `$ref`s; None-safe."""

    def __init__(self, version, node):
        self.version = version
        self.node = self._resolve(node)

    def _resolve(self, node):
        seen = 0
        while isinstance(node, dict) and '$ref' in node and seen < 50:
            name = node['$ref'].split('#/$defs/')[-1]
            node = _definitions(self.version, False)['$defs'].get(name)
            seen += 1
        return node if isinstance(node, dict) else None

    def child(self, key):
        if self.node is None:
            return SchemaNode(self.version, None)
        props = self.node.get('properties')
        if props and key in props:
            return SchemaNode(self.version, props[key])
        extra = self.node.get('additionalProperties')
        if isinstance(extra, dict):
            return SchemaNode(self.version, extra)
        return SchemaNode(self.version, None)

    def items(self):
        if self.node is None:
            return SchemaNode(self.version, None)
        return SchemaNode(self.version, self.node.get('items'))

    def list_strategy(self):
        """('merge', key) for lists merged by a key, ('merge', None) for sets of primitives,
        ('replace', None) otherwise."""
        if self.node is None:
            return ('replace', None)
        strategy = self.node.get('x-kubernetes-patch-strategy', '')
        if 'merge' in strategy.split(','):
            return ('merge', self.node.get('x-kubernetes-patch-merge-key'))
        return ('replace', None)

    def retain_keys(self):
        return self.node is not None and 'retainKeys' in self.node.get('x-kubernetes-patch-strategy', '')


def root(version, api_version, kind):
    """The schema of a kind as a SchemaNode (its `.node` is None for unknown kinds)."""
    return SchemaNode(version, kind_schema(version, api_version, kind))
