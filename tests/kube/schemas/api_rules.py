"""The API server's rules that kubernetes-validate leaves out, for the objects Xiji writes.

kubernetes-validate checks objects against the OpenAPI schemas, which say "string" where the API
server checks a syntax in code (apimachinery's validation package): names, labels, quantities.
Usage: api_rules.py FILE.json...; prints one line per problem and exits 1 if there is any.
"""

import base64
import json
import re
import sys

DNS1123_LABEL = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')
DNS1035_LABEL = re.compile(r'^[a-z]([-a-z0-9]*[a-z0-9])?$')
DNS1123_SUBDOMAIN = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')
QUALIFIED_NAME = re.compile(r'^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$')
LABEL_VALUE = re.compile(r'^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$')
QUANTITY = re.compile(r'^[+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))'
                      r'(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$')
CONFIG_KEY = re.compile(r'^[-._a-zA-Z0-9]+$')
ENV_NAME = re.compile(r'^[-._a-zA-Z][-._a-zA-Z0-9]*$')
PORT_NAME = re.compile(r'^(?=.*[a-z])[a-z0-9]([a-z0-9-]*[a-z0-9])?$')
NATIVE = {'cpu', 'memory', 'ephemeral-storage', 'storage'}


class Checker:
    def __init__(self, path):
        self.path = path
        self.problems = []

    def expect(self, ok, where, message):
        if not ok:
            self.problems.append(f'{self.path}: {where}: {message}')

    def name(self, pattern, value, where, limit=253):
        self.expect(isinstance(value, str) and len(value) <= limit and pattern.match(value),
                    where, f'{value!r} is not a valid name here')

    def qualified_key(self, key, where):
        prefix, _, name = key.rpartition('/')
        self.expect(len(name) <= 63 and QUALIFIED_NAME.match(name)
                    and (not prefix or (len(prefix) <= 253 and DNS1123_SUBDOMAIN.match(prefix))),
                    where, f'{key!r} is not a qualified name')

    def labels(self, labels, where):
        for key, value in (labels or {}).items():
            self.qualified_key(key, f'{where}.{key}')
            self.expect(isinstance(value, str) and len(value) <= 63 and LABEL_VALUE.match(value),
                        f'{where}.{key}', f'{value!r} is not a label value')

    def quantities(self, resources, where):
        for resource, value in (resources or {}).items():
            self.qualified_key(resource, f'{where}.{resource}')
            self.expect(isinstance(value, int) or (isinstance(value, str) and QUANTITY.match(value)),
                        f'{where}.{resource}', f'{value!r} is not a quantity')

    def metadata(self, meta, kind):
        pattern, limit = (DNS1035_LABEL, 63) if kind == 'Service' else (DNS1123_SUBDOMAIN, 253)
        self.name(pattern, meta.get('name'), 'metadata.name', limit)
        self.name(DNS1123_LABEL, meta.get('namespace'), 'metadata.namespace', 63)
        self.labels(meta.get('labels'), 'metadata.labels')
        for key in (meta.get('annotations') or {}):
            self.qualified_key(key, f'metadata.annotations.{key}')
        for i, ref in enumerate(meta.get('ownerReferences') or []):
            for field in ('apiVersion', 'kind', 'name', 'uid'):
                self.expect(ref.get(field), f'metadata.ownerReferences[{i}]', f'no {field}')

    def pod(self, spec):
        for field in ('hostname', 'subdomain'):
            if field in spec:
                self.name(DNS1123_LABEL, spec[field], f'spec.{field}', 63)
        self.labels(spec.get('nodeSelector'), 'spec.nodeSelector')
        volumes = {}
        for i, volume in enumerate(spec.get('volumes') or []):
            self.name(DNS1123_LABEL, volume.get('name'), f'spec.volumes[{i}].name', 63)
            self.expect(volume.get('name') not in volumes, f'spec.volumes[{i}]', 'duplicate name')
            volumes[volume.get('name')] = volume
            if 'emptyDir' in volume:
                self.quantities({'sizeLimit': volume['emptyDir'].get('sizeLimit', '0')},
                                f'spec.volumes[{i}].emptyDir')
            for source in ('secret', 'configMap'):
                for item in (volume.get(source) or {}).get('items') or []:
                    self.expect(CONFIG_KEY.match(item['key']), f'spec.volumes[{i}]',
                                f'bad key {item["key"]!r}')
                    self.expect(not item['path'].startswith('/') and '..' not in item['path'].split('/'),
                                f'spec.volumes[{i}]', f'bad path {item["path"]!r}')
        for c, container in enumerate(spec.get('containers') or []):
            where = f'spec.containers[{c}]'
            self.name(DNS1123_LABEL, container.get('name'), f'{where}.name', 63)
            resources = container.get('resources') or {}
            self.quantities(resources.get('requests'), f'{where}.resources.requests')
            self.quantities(resources.get('limits'), f'{where}.resources.limits')
            for resource, value in (resources.get('requests') or {}).items():
                if resource not in NATIVE and '/' in resource:
                    self.expect((resources.get('limits') or {}).get(resource) == value,
                                f'{where}.resources', f'{resource}: requests must equal limits')
            for port in container.get('ports') or []:
                if 'name' in port:
                    self.name(PORT_NAME, port['name'], f'{where}.ports', 15)
            for env in container.get('env') or []:
                self.expect(ENV_NAME.match(env['name']), f'{where}.env', f'bad name {env["name"]!r}')
                self.expect(('value' in env) != ('valueFrom' in env) or env.keys() == {'name'},
                            f'{where}.env.{env["name"]}', 'both value and valueFrom')
            paths = set()
            for mount in container.get('volumeMounts') or []:
                self.expect(mount['name'] in volumes, f'{where}.volumeMounts',
                            f'no volume {mount["name"]!r}')
                self.expect(mount['mountPath'] not in paths, f'{where}.volumeMounts',
                            f'{mount["mountPath"]!r} mounted twice')
                paths.add(mount['mountPath'])
                sub = mount.get('subPath', '')
                self.expect(not sub.startswith('/') and '..' not in sub.split('/'),
                            f'{where}.volumeMounts', f'bad subPath {sub!r}')

    def check(self, obj):
        kind = obj.get('kind')
        self.metadata(obj.get('metadata') or {}, kind)
        spec = obj.get('spec') or {}
        if kind == 'Pod':
            self.pod(spec)
        elif kind == 'Service':
            self.labels(spec.get('selector'), 'spec.selector')
            for port in spec.get('ports') or []:
                self.name(PORT_NAME, port.get('name'), 'spec.ports', 15)
        elif kind == 'NetworkPolicy':
            self.labels((spec.get('podSelector') or {}).get('matchLabels'), 'spec.podSelector')
            for rule in spec.get('ingress') or []:
                for peer in rule.get('from') or []:
                    self.labels((peer.get('podSelector') or {}).get('matchLabels'), 'spec.ingress')
        elif kind in ('Secret', 'ConfigMap'):
            for key, value in (obj.get('data') or {}).items():
                self.expect(CONFIG_KEY.match(key), f'data.{key}', 'not a valid key')
                if kind == 'Secret':
                    try:
                        base64.b64decode(value, validate=True)
                    except ValueError:
                        self.expect(False, f'data.{key}', 'not base64')
        elif kind == 'PodGroup':
            self.quantities(spec.get('minResources'), 'spec.minResources')


def main(paths):
    problems = []
    for path in paths:
        checker = Checker(path)
        with open(path) as f:
            checker.check(json.load(f))
        problems += checker.problems
    for problem in problems:
        print(problem)
    print(f'{len(paths)} objects, {len(problems)} problems')
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
