"""The API server's storage and semantics: uids, resource versions, generations, validation,
create/update/patch/delete with preconditions, graceful deletion and finalizers, and the event
history that watches replay from a resource version."""

import asyncio
import base64
import collections
import copy
import json
import random
import re
import string
import uuid

import yaml

from . import defaults, patch, schema
from .errors import ApiError
from .resources import timestamp

# Events kept per resource type for watches that resume from a resource version.
HISTORY = 20000

_DNS_LABEL = re.compile(r'[a-z0-9]([-a-z0-9]*[a-z0-9])?')
_DNS_SUBDOMAIN = re.compile(r'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')
_DNS_1035 = re.compile(r'[a-z]([-a-z0-9]*[a-z0-9])?')
_LABEL_VALUE = re.compile(r'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')
_QUALIFIED_NAME = re.compile(r'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')

# Kinds whose names must be DNS-1123 labels or DNS-1035 labels rather than subdomains.
_LABEL_NAMED = {'Namespace'}
_DNS_1035_NAMED = {'Service'}


class Watcher:
    def __init__(self, res, selector):
        self.res = res
        self.selector = selector
        self.queue = asyncio.Queue()

    def offer(self, rv, kind, old, new):
        """Queues what this watch sees of a change, as the watch cache does: an object that starts
        matching the selector is ADDED, one that stops matching is DELETED."""
        if self.res.convert_out is not None:
            old = None if old is None else self.res.convert_out(old)
            new = None if new is None else self.res.convert_out(new)
        old_match = old is not None and self.selector.matches(old)
        new_match = kind != 'DELETED' and self.selector.matches(new)
        if kind == 'DELETED':
            if old_match:
                self.queue.put_nowait(('DELETED', new))
            return
        if old_match and new_match:
            self.queue.put_nowait(('MODIFIED', new))
        elif new_match:
            self.queue.put_nowait(('ADDED', new))
        elif old_match:
            gone = copy.deepcopy(old)
            gone['metadata']['resourceVersion'] = str(rv)
            self.queue.put_nowait(('DELETED', gone))


class Store:
    def __init__(self, index, k8s_version='1.33'):
        self.index = index
        self.k8s_version = k8s_version
        self.rv = 1
        self.objects = collections.defaultdict(dict)
        self.history = collections.defaultdict(collections.deque)
        self.floor = collections.defaultdict(int)
        self.watchers = collections.defaultdict(set)
        self.uids = {}
        # Server-side apply: each (uid, field manager, subresource)'s last applied configuration.
        self.applied = {}
        self.listeners = []
        # The resource each store key holds its objects as (not a converting view of them).
        self.storage = {}
        for res in index.values():
            if res.convert_in is None:
                self.storage.setdefault(res.key, res)

    # ---- lookup ----

    def res(self, group, version, plural):
        return self.index.get((group, version, plural))

    def res_for(self, api_version, kind):
        group, _, version = api_version.rpartition('/')
        for res in self.index.values():
            if res.group == group and res.version == version and res.kind == kind:
                return res
        return None

    def get(self, res, ns, name):
        obj = self.objects[res.key].get((ns if res.namespaced else None, name))
        if obj is None:
            raise ApiError.not_found(res, name)
        return self.view(res, obj)

    def find(self, res, ns, name):
        obj = self.objects[res.key].get((ns if res.namespaced else None, name))
        return None if obj is None else self.view(res, obj)

    def view(self, res, obj):
        """A copy of a stored object as read through `res`'s version."""
        out = copy.deepcopy(obj)
        if res.convert_out is not None:
            out = res.convert_out(out)
        out['apiVersion'] = res.api_version
        return out

    def list(self, res, selector):
        stored = sorted(self.objects[res.key].items(), key=lambda kv: (kv[0][0] or '', kv[0][1]))
        if res.convert_out is not None:
            items = [item for item in (self.view(res, obj) for _, obj in stored) if selector.matches(item)]
        else:
            items = [self.view(res, obj) for _, obj in stored if selector.matches(obj)]
        return items, self.rv

    def by_uid(self, uid):
        where = self.uids.get(uid)
        if where is None:
            return None
        res, ns, name = where
        return self.objects[res.key].get((ns, name))

    # ---- the log of changes ----

    def _emit(self, res, kind, old, new):
        self.rv += 1
        rv = self.rv
        target = new if new is not None else copy.deepcopy(old)
        target['metadata']['resourceVersion'] = str(rv)
        history = self.history[res.key]
        history.append((rv, kind, old, target))
        while len(history) > HISTORY:
            dropped = history.popleft()
            self.floor[res.key] = dropped[0]
        for watcher in list(self.watchers[res.key]):
            watcher.offer(rv, kind, old, target)
        for listener in list(self.listeners):
            listener(res, kind, old, target)
        return target

    def events_since(self, res, rv):
        """The stored changes after `rv`, or 410 Expired when they are no longer all known."""
        if rv < self.floor[res.key]:
            raise ApiError.gone(f'too old resource version: {rv} ({self.floor[res.key] + 1})')
        return [event for event in self.history[res.key] if event[0] > rv]

    def _store(self, res, obj, kind, old):
        meta = obj['metadata']
        key = (meta.get('namespace') if res.namespaced else None, meta['name'])
        stored = self._emit(res, kind, old, obj)
        self.objects[res.key][key] = stored
        self.uids[meta['uid']] = (res, key[0], key[1])
        return stored

    def _remove(self, res, obj):
        meta = obj['metadata']
        key = (meta.get('namespace') if res.namespaced else None, meta['name'])
        self.objects[res.key].pop(key, None)
        self.uids.pop(meta.get('uid'), None)
        gone = self._emit(res, 'DELETED', obj, None)
        return gone

    # ---- checks ----

    def _check_name(self, res, obj):
        meta = obj['metadata']
        name = meta.get('name', '')
        causes = []
        if res.kind in _LABEL_NAMED:
            ok, what = _DNS_LABEL.fullmatch(name) and len(name) <= 63, 'RFC 1123 label'
            hint = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
                    "'-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
                    "'123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
        elif res.kind in _DNS_1035_NAMED:
            ok, what = _DNS_1035.fullmatch(name) and len(name) <= 63, 'RFC 1035 label'
            hint = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
                    "with an alphabetic character, and end with an alphanumeric character (e.g. "
                    "'my-name',  or 'abc-123', regex used for validation is "
                    "'[a-z]([-a-z0-9]*[a-z0-9])?')")
        elif res.kind in ('Event',):
            ok, what, hint = True, '', ''
        else:
            ok, what = _DNS_SUBDOMAIN.fullmatch(name) and len(name) <= 253, 'RFC 1123 subdomain'
            hint = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                    "'-' or '.', and must start and end with an alphanumeric character (e.g. "
                    "'example.com', regex used for validation is "
                    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
        if not ok:
            causes.append(('metadata.name', f'Invalid value: "{name}": {hint}'))
        for field in ('labels', 'annotations'):
            values = meta.get(field) or {}
            if not isinstance(values, dict):
                continue
            for key, value in values.items():
                prefix, _, plain = key.rpartition('/')
                if not _QUALIFIED_NAME.fullmatch(plain) or len(plain) > 63 or (
                        prefix and not _DNS_SUBDOMAIN.fullmatch(prefix)):
                    causes.append((f'metadata.{field}', f'Invalid value: "{key}": name part must consist of alphanumeric characters, \'-\', \'_\' or \'.\', and must start and end with an alphanumeric character (e.g. \'MyName\',  or \'my.name\',  or \'123-abc\', regex used for validation is \'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]\')'))
                if field == 'labels' and (not isinstance(value, str) or not _LABEL_VALUE.fullmatch(value) or len(value) > 63):
                    causes.append(('metadata.labels', f'Invalid value: "{value}": a valid label must be an empty string or consist of alphanumeric characters, \'-\', \'_\' or \'.\', and must start and end with an alphanumeric character (e.g. \'MyValue\',  or \'my_value\',  or \'12345\', regex used for validation is \'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?\')'))
        if causes:
            raise ApiError.invalid(res, name, causes)

    def _check_schema(self, res, obj, field_validation):
        """422 for type errors; unknown fields are an error under `fieldValidation=Strict` and
        otherwise dropped with a warning, as a real server does."""
        errors, unknown = schema.check(obj, self.k8s_version)
        name = obj['metadata'].get('name', '')
        if errors:
            raise ApiError.invalid(res, name, errors)
        warnings = []
        for path in unknown:
            field = schema.field_name(path)
            if field_validation == 'Strict':
                raise ApiError.bad_request(f'strict decoding error: unknown field "{field}"')
            if field_validation != 'Ignore':
                warnings.append(f'unknown field "{field}"')
            schema.drop_field(obj, path)
        return warnings

    def _check_namespace(self, res, ns, name):
        if not res.namespaced:
            return
        namespace = self.objects[('', 'namespaces')].get((None, ns))
        if namespace is None:
            raise ApiError(404, 'NotFound', f'namespaces "{ns}" not found',
                           {'name': ns, 'kind': 'namespaces'})
        if namespace['metadata'].get('deletionTimestamp'):
            raise ApiError.forbidden(res, name, f'unable to create new content in namespace {ns} because it is being terminated')

    # ---- writes ----

    def create(self, res, ns, body, dry_run=False, field_validation=None, warnings=None):
        if not isinstance(body, dict):
            raise ApiError.bad_request('the body of the request was not a JSON object')
        obj = copy.deepcopy(body)
        self._check_type(res, obj)
        shown_as = res
        if res.convert_in is not None:
            obj = res.convert_in(obj)
            res = self.storage[res.key]
        meta = obj.setdefault('metadata', {})
        if not isinstance(meta, dict):
            raise ApiError.bad_request('metadata must be an object')
        if res.namespaced:
            body_ns = meta.get('namespace')
            if body_ns and ns and body_ns != ns:
                raise ApiError.bad_request('the namespace of the provided object does not match the namespace sent on the request')
            ns = ns or body_ns or 'default'
            meta['namespace'] = ns
        else:
            meta.pop('namespace', None)
        if not meta.get('name'):
            prefix = meta.get('generateName')
            if not prefix:
                raise ApiError.invalid(res, '', [('metadata.name', 'Required value: name or generateName is required')])
            for _ in range(100):
                name = prefix + ''.join(random.choices(string.ascii_lowercase + string.digits, k=5))
                if (ns if res.namespaced else None, name) not in self.objects[res.key]:
                    break
            meta['name'] = name
        name = meta['name']
        self._check_namespace(res, ns, name)
        defaults.admit(self, res, obj)
        for field in ('uid', 'resourceVersion', 'creationTimestamp', 'deletionTimestamp',
                      'deletionGracePeriodSeconds', 'generation', 'selfLink', 'managedFields'):
            meta.pop(field, None)
        if res.kind == 'Node':
            pass
        elif 'status' in res.subresources:
            obj.pop('status', None)
        defaults.on_create(self, res, obj)
        self._check_name(res, obj)
        found = self._check_schema(res, obj, field_validation)
        if warnings is not None:
            warnings.extend(found)
        key = (ns if res.namespaced else None, name)
        if key in self.objects[res.key]:
            raise ApiError.already_exists(res, name)
        meta['uid'] = str(uuid.uuid4())
        meta['creationTimestamp'] = timestamp()
        meta['generation'] = 1
        if dry_run:
            meta['resourceVersion'] = str(self.rv)
            return self.view(shown_as, obj)
        stored = self._store(res, obj, 'ADDED', None)
        defaults.after_create(self, res, stored)
        return self.view(shown_as, stored)

    def _check_type(self, res, obj):
        api_version = obj.get('apiVersion')
        kind = obj.get('kind')
        if api_version and api_version != res.api_version:
            raise ApiError.bad_request(f'the API version in the data ({api_version}) does not match the expected API version ({res.api_version})')
        if kind and kind != res.kind:
            raise ApiError.bad_request(f'the kind in the data ({kind}) does not match the expected kind ({res.kind})')
        obj['apiVersion'] = res.api_version
        obj['kind'] = res.kind

    def update(self, res, ns, name, body, subresource=None, dry_run=False,
               field_validation=None, warnings=None):
        """PUT: replaces the object (or only its status through `/status`)."""
        if not isinstance(body, dict):
            raise ApiError.bad_request('the body of the request was not a JSON object')
        current = self.get(res, ns, name)
        body_name = (body.get('metadata') or {}).get('name')
        if body_name and body_name != name:
            raise ApiError.bad_request(f'the name of the object ({body_name}) does not match the name on the URL ({name})')
        wanted_rv = (body.get('metadata') or {}).get('resourceVersion')
        if wanted_rv and wanted_rv != current['metadata']['resourceVersion']:
            raise ApiError.conflict(res, name)
        return self._replace(res, current, copy.deepcopy(body), subresource, dry_run,
                             field_validation, warnings)

    def patch(self, res, ns, name, content_type, body, subresource=None, dry_run=False,
              field_validation=None, warnings=None, force=False, manager=None):
        content_type = (content_type or '').split(';')[0].strip()
        if content_type == 'application/apply-patch+yaml':
            applied = _decode_apply(body)
            if not manager:
                raise ApiError.bad_request('PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch')
            current = self.find(res, ns, name)
            if current is None:
                if subresource:
                    raise ApiError.not_found(res, name)
                applied.setdefault('metadata', {})['name'] = name
                created = self.create(res, ns, applied, dry_run, field_validation, warnings)
                if not dry_run:
                    self.applied[(created['metadata']['uid'], manager, subresource)] = copy.deepcopy(applied)
                return created
            node = schema.root(self.k8s_version, res.api_version, res.kind)
            base = copy.deepcopy(current)
            previous = self.applied.get((current['metadata']['uid'], manager, subresource))
            patch.prune_unapplied(base, previous, applied, node)
            merged = self._strategic(res, base, applied, subresource) if node.node is not None \
                else patch.merge_patch(base, applied)
            result = self._replace(res, current, merged, subresource, dry_run, field_validation, warnings)
            if not dry_run:
                self.applied[(current['metadata']['uid'], manager, subresource)] = copy.deepcopy(applied)
            return result
        try:
            data = json.loads(body or b'null')
        except ValueError as e:
            raise ApiError.bad_request(f'error decoding patch: {e}')
        current = self.get(res, ns, name)
        if content_type == 'application/merge-patch+json':
            if not isinstance(data, dict):
                raise ApiError.bad_request('json: cannot unmarshal array into Go value of type map[string]interface {}')
            merged = patch.merge_patch(current, data)
        elif content_type == 'application/strategic-merge-patch+json':
            if not isinstance(data, dict):
                raise ApiError.bad_request('json: cannot unmarshal array into Go value of type map[string]interface {}')
            merged = self._strategic(res, current, data, subresource)
        elif content_type == 'application/json-patch+json':
            merged = patch.json_patch(current, data)
        else:
            raise ApiError.unsupported_media_type(content_type)
        if not isinstance(merged, dict):
            raise ApiError.bad_request('the patch does not give an object')
        wanted_rv = (merged.get('metadata') or {}).get('resourceVersion')
        if wanted_rv and wanted_rv != current['metadata']['resourceVersion']:
            raise ApiError.conflict(res, name)
        return self._replace(res, current, merged, subresource, dry_run, field_validation, warnings)

    def _strategic(self, res, current, data, subresource):
        node = schema.root(self.k8s_version, res.api_version, res.kind)
        if node.node is None:
            raise ApiError(415, 'UnsupportedMediaType',
                           'strategic merge patch format is not supported')
        return patch.strategic_merge_patch(current, data, node)

    def _replace(self, res, current, new, subresource, dry_run, field_validation, warnings):
        name = current['metadata']['name']
        if subresource not in (None, 'status'):
            raise ApiError(404, 'NotFound', f'the server could not find the requested resource')
        self._check_type(res, new)
        shown_as = res
        if res.convert_in is not None:
            current, new = res.convert_in(current), res.convert_in(new)
            res = self.storage[res.key]
        meta = new.setdefault('metadata', {})
        if not isinstance(meta, dict):
            raise ApiError.bad_request('metadata must be an object')
        old_meta = current['metadata']
        if subresource == 'status':
            merged = copy.deepcopy(current)
            if 'status' in new:
                merged['status'] = new['status']
            else:
                merged.pop('status', None)
            new = merged
            meta = new['metadata']
        else:
            # Only `/status` changes the status of a resource that has that subresource.
            if 'status' in res.subresources:
                if 'status' in current:
                    new['status'] = copy.deepcopy(current['status'])
                else:
                    new.pop('status', None)
            for field in ('uid', 'creationTimestamp', 'deletionTimestamp',
                          'deletionGracePeriodSeconds', 'generation', 'namespace', 'name'):
                if field in old_meta:
                    meta[field] = old_meta[field]
                else:
                    meta.pop(field, None)
            if old_meta.get('deletionTimestamp'):
                added = set(meta.get('finalizers') or []) - set(old_meta.get('finalizers') or [])
                if added:
                    raise ApiError.forbidden(res, name, 'no new finalizers can be added if the object is being deleted, found new finalizers ' + json.dumps(sorted(added)))
        defaults.on_update(self, res, current, new)
        self._check_name(res, new)
        found = self._check_schema(res, new, field_validation)
        if warnings is not None:
            warnings.extend(found)
        defaults.check_update(self, res, current, new)
        spec_of = lambda o: {k: v for k, v in o.items() if k not in ('metadata', 'status', 'apiVersion', 'kind')}
        if subresource is None and spec_of(new) != spec_of(current):
            meta['generation'] = int(old_meta.get('generation', 1)) + 1
        meta['resourceVersion'] = old_meta['resourceVersion']
        if new == current:
            return self.view(shown_as, current)
        if dry_run:
            return self.view(shown_as, new)
        stored = self._store(res, new, 'MODIFIED', self.objects[res.key][self._key(res, current)])
        if self._removable(res, stored):
            self._remove(res, stored)
        return self.view(shown_as, stored)

    def _key(self, res, obj):
        meta = obj['metadata']
        return (meta.get('namespace') if res.namespaced else None, meta['name'])

    def delete(self, res, ns, name, options=None, dry_run=False):
        """Returns (object, removed): removed objects are answered with a `Status`, objects that
        wait for finalizers or a graceful stop with themselves."""
        options = options or {}
        current = self.get(res, ns, name)
        pre = options.get('preconditions') or {}
        if pre.get('uid') and pre['uid'] != current['metadata']['uid']:
            raise ApiError(409, 'Conflict', f'Precondition failed: UID in precondition: {pre["uid"]}, UID in object meta: {current["metadata"]["uid"]}')
        if pre.get('resourceVersion') and pre['resourceVersion'] != current['metadata']['resourceVersion']:
            raise ApiError.conflict(res, name)
        if dry_run:
            return current, False
        stored = self.objects[res.key][self._key(res, current)]
        meta = copy.deepcopy(stored['metadata'])
        policy = options.get('propagationPolicy') or ('Orphan' if options.get('orphanDependents') else None)
        if policy is None:
            policy = defaults.default_propagation(res)
        grace = defaults.grace_period(res, stored, options.get('gracePeriodSeconds'))
        finalizers = list(meta.get('finalizers') or [])
        if policy == 'Foreground' and 'foregroundDeletion' not in finalizers and self._has_dependents(meta['uid']):
            finalizers.append('foregroundDeletion')
        if policy == 'Orphan' and 'orphan' not in finalizers and self._has_dependents(meta['uid']):
            finalizers.append('orphan')
        if meta.get('deletionTimestamp'):
            # Already being deleted: a shorter grace period may still be asked for.
            if grace is not None and grace < int(meta.get('deletionGracePeriodSeconds') or 0):
                new = copy.deepcopy(stored)
                new['metadata']['deletionGracePeriodSeconds'] = grace
                stored = self._store(res, new, 'MODIFIED', stored)
                if self._removable(res, stored):
                    return self.view(res, self._remove(res, stored)), True
            return self.view(res, stored), False
        namespace_finalizers = res.key == ('', 'namespaces') and (stored.get('spec') or {}).get('finalizers')
        if not finalizers and not grace and not namespace_finalizers:
            return self.view(res, self._remove(res, stored)), True
        new = copy.deepcopy(stored)
        if namespace_finalizers:
            new.setdefault('status', {})['phase'] = 'Terminating'
        new['metadata']['deletionTimestamp'] = timestamp()
        new['metadata']['deletionGracePeriodSeconds'] = grace or 0
        if finalizers:
            new['metadata']['finalizers'] = finalizers
        stored = self._store(res, new, 'MODIFIED', stored)
        return self.view(res, stored), False

    def _has_dependents(self, uid):
        for objects in self.objects.values():
            for obj in objects.values():
                for ref in obj['metadata'].get('ownerReferences') or []:
                    if ref.get('uid') == uid:
                        return True
        return False

    def dependents(self, uid):
        out = []
        for key, objects in self.objects.items():
            for obj in objects.values():
                for ref in obj['metadata'].get('ownerReferences') or []:
                    if ref.get('uid') == uid:
                        out.append((key, obj))
        return out

    def res_of_key(self, key):
        """The stored-as resource of a (group, plural) key."""
        return self.storage.get(key)

    # ---- internal writes of the controllers (no validation round trip needed) ----

    def write_status(self, res, obj, status):
        """Replaces the status of the stored object `obj` (controllers' `/status` writes)."""
        current = self.objects[res.key].get(self._key(res, obj))
        if current is None:
            return None
        if current.get('status') == status:
            return current
        new = copy.deepcopy(current)
        new['status'] = status
        return self._store(res, new, 'MODIFIED', current)

    def write(self, res, new):
        """Stores a changed copy of an existing object (controllers' writes)."""
        current = self.objects[res.key].get(self._key(res, new))
        if current is None:
            return None
        if current == new:
            return current
        new['metadata']['resourceVersion'] = current['metadata']['resourceVersion']
        stored = self._store(res, new, 'MODIFIED', current)
        if self._removable(res, stored):
            self._remove(res, stored)
        return stored

    def _removable(self, res, obj):
        """A deleted object goes once its finalizers are done and its grace period is over."""
        meta = obj['metadata']
        if not meta.get('deletionTimestamp') or meta.get('finalizers') or meta.get('deletionGracePeriodSeconds'):
            return False
        if res.key == ('', 'namespaces') and (obj.get('spec') or {}).get('finalizers'):
            return False
        return True


def _decode_apply(body):
    try:
        data = yaml.safe_load(body.decode() if isinstance(body, bytes) else body)
    except yaml.YAMLError as e:
        raise ApiError.bad_request(f'error decoding YAML: {e}')
    if not isinstance(data, dict):
        raise ApiError.bad_request('the applied configuration is not an object')
    return data


def decode_secret_strings(obj):
    """`stringData` folded into `data` (base64), as the API server stores Secrets."""
    strings = obj.pop('stringData', None)
    if strings:
        data = obj.setdefault('data', {}) or {}
        for key, value in strings.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        obj['data'] = data
