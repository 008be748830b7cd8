"""The HTTP face of the API server: kmock's `KubernetesEmulator` with our own object semantics.

kmock gives the resource catalogue and the discovery documents (`/api`, `/apis`, `/api/v1`…) and
the serving machinery; its in-memory store only merges JSON, so every request on a resource is
answered here from `Store` instead, the way a real API server answers it."""

import asyncio
import json
import logging
import time
import traceback
import urllib.parse

import aiohttp.web
import attrs
from kmock import KubernetesEmulator, KubernetesError
from kmock._internal import references, rendering

from .errors import ApiError
from .selection import Selector
from .store import Watcher

log = logging.getLogger('standin.api')

SERVER_VERSION = {
    'major': '1', 'minor': '33', 'gitVersion': 'v1.33.2',
    'gitCommit': '0000000000000000000000000000000000000000', 'gitTreeState': 'clean',
    'buildDate': '2025-06-17T18:29:00Z', 'goVersion': 'go1.24.4', 'compiler': 'gc',
    'platform': 'linux/amd64',
}

AGGREGATED = 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList'

# Resources whose DELETE answers with the object rather than a Status (ReturnDeletedObject).
_RETURNS_DELETED = {('', 'pods'), ('', 'serviceaccounts'), ('storage.k8s.io', 'storageclasses')}

# How often a watch that allows bookmarks gets one.
BOOKMARK_EVERY = 5.0


def _json(body, status=200, headers=None):
    return aiohttp.web.Response(
        body=json.dumps(body, separators=(',', ':')).encode(), status=status,
        content_type='application/json', headers=headers)


def _flag(query, name):
    return query.get(name, '').lower() in ('true', '1')


@attrs.define(kw_only=True)
class ApiServer(KubernetesEmulator):
    store: object = None
    kubelet: object = None
    control: object = None

    async def __call__(self, raw):
        started = time.monotonic()
        try:
            response = await self._serve(raw)
        except ApiError as e:
            response = _json(e.status(), status=e.code)
        except KubernetesError as e:
            response = _json({'kind': 'Status', 'apiVersion': 'v1', 'metadata': {},
                              'status': 'Failure', 'message': e.message or 'not found',
                              'reason': 'NotFound', 'code': e.status}, status=e.status)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as e:
            log.error('internal error on %s %s: %s', raw.method, raw.path_qs, traceback.format_exc())
            response = _json({'kind': 'Status', 'apiVersion': 'v1', 'metadata': {},
                              'status': 'Failure', 'message': f'internal error: {e!r}',
                              'reason': 'InternalError', 'code': 500}, status=500)
        log.debug('%s %s → %s in %.1f ms', raw.method, raw.path_qs,
                  getattr(response, 'status', '?'), (time.monotonic() - started) * 1000)
        return response

    async def _serve(self, raw):
        path = raw.path
        if path.startswith('/_test/'):
            return await self.control.handle(raw)
        if path in ('/healthz', '/readyz', '/livez'):
            return aiohttp.web.Response(text='ok')
        if path == '/version':
            return _json(SERVER_VERSION)
        parts = [urllib.parse.unquote(p) for p in path.strip('/').split('/') if p]
        if not parts:
            return _json(await self._serve_root(rendering.Request()))
        if parts[0] == 'api':
            group, rest = '', parts[1:]
        elif parts[0] == 'apis':
            if len(parts) == 1:
                return await self._discovery_apis(raw)
            group, rest = parts[1], parts[2:]
        else:
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        if group == '' and not rest:
            return await self._discovery_api(raw)
        if not rest:
            request = rendering.Request(resource=references.resource(group=group, version=None, plural=None))
            return _json(await self._serve_group(request))
        version, rest = rest[0], rest[1:]
        if not rest:
            request = rendering.Request(resource=references.resource(group=group, version=version, plural=None))
            return _json(await self._serve_version(request))
        namespace = None
        if rest[0] == 'namespaces' and len(rest) >= 3 and rest[2] not in ('status', 'finalize'):
            namespace, rest = rest[1], rest[2:]
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else None
        subresource = '/'.join(rest[2:]) or None
        res = self.store.res(group, version, plural)
        if res is None:
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        if res.namespaced is False and namespace is not None:
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        if subresource and subresource not in res.subresources:
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        return await self._serve_resource(raw, res, namespace, name, subresource)

    # ---- discovery ----

    def _aggregated(self, raw):
        return 'as=APIGroupDiscoveryList' in raw.headers.get('Accept', '')

    async def _discovery_api(self, raw):
        if self._aggregated(raw):
            return self._aggregated_list(core=True)
        return _json(await self._serve_api(rendering.Request()))

    async def _discovery_apis(self, raw):
        if self._aggregated(raw):
            return self._aggregated_list(core=False)
        return _json(await self._serve_apis(rendering.Request()))

    def _aggregated_list(self, core):
        groups = {}
        for res in self.store.index.values():
            if (res.group == '') != core:
                continue
            versions = groups.setdefault(res.group, {})
            versions.setdefault(res.version, []).append(res)
        items = []
        for group, versions in sorted(groups.items()):
            items.append({
                'metadata': {'name': group} if group else {},
                'versions': [{
                    'version': version,
                    'freshness': 'Current',
                    'resources': [{
                        'resource': res.plural,
                        'responseKind': {'group': res.group, 'version': res.version, 'kind': res.kind},
                        'scope': 'Namespaced' if res.namespaced else 'Cluster',
                        'singularResource': res.singular,
                        'verbs': sorted(res.verbs),
                        'shortNames': sorted(res.shortnames),
                        'categories': sorted(res.categories),
                        'subresources': [{
                            'subresource': sub,
                            'responseKind': {'group': res.group, 'version': res.version, 'kind': res.kind},
                            'verbs': ['get', 'patch', 'update'] if sub == 'status' else ['get'],
                        } for sub in sorted(res.subresources)],
                    } for res in sorted(resources, key=lambda r: r.plural)],
                } for version, resources in sorted(versions.items(), reverse=True)],
            })
        body = {'kind': 'APIGroupDiscoveryList', 'apiVersion': 'apidiscovery.k8s.io/v2',
                'metadata': {}, 'items': items}
        response = _json(body)
        response.content_type = 'application/json'
        response.headers['Content-Type'] = AGGREGATED
        return response

    # ---- resources ----

    async def _serve_resource(self, raw, res, ns, name, subresource):
        query = raw.query
        method = raw.method
        dry_run = bool(query.get('dryRun'))
        field_validation = query.get('fieldValidation')
        warnings = []
        store = self.store

        def answer(obj, status=200):
            headers = None
            if warnings:
                headers = {'Warning': ', '.join('299 - ' + json.dumps(w) for w in warnings)}
            return _json(obj, status=status, headers=headers)

        if name is None:
            if method == 'GET':
                if _flag(query, 'watch'):
                    return await self._watch(raw, res, ns, None)
                return self._list(res, ns, query)
            if method == 'POST':
                body = await self._body(raw)
                created = store.create(res, ns, body, dry_run, field_validation, warnings)
                return answer(created, 201)
            if method == 'DELETE':
                return await self._delete_collection(raw, res, ns, dry_run)
            raise ApiError.method_not_allowed()

        if subresource == 'log' and method == 'GET':
            return await self.kubelet.serve_log(raw, ns, name)
        if subresource == 'binding' and method == 'POST':
            body = await self._body(raw)
            return answer(self.kubelet.scheduler.bind_request(ns, name, body), 201)
        if subresource == 'eviction' and method == 'POST':
            store.delete(res, ns, name, {}, dry_run)
            return answer({'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Success', 'code': 201}, 201)
        if subresource not in (None, 'status'):
            raise ApiError.method_not_allowed()

        if method == 'GET':
            if _flag(query, 'watch'):
                return await self._watch(raw, res, ns, name)
            return answer(store.get(res, ns, name))
        if method == 'PUT':
            body = await self._body(raw)
            return answer(store.update(res, ns, name, body, subresource, dry_run, field_validation, warnings))
        if method == 'PATCH':
            content_type = raw.headers.get('Content-Type', '')
            body = await raw.read()
            existed = store.find(res, ns, name) is not None
            result = store.patch(res, ns, name, content_type, body, subresource, dry_run,
                                 field_validation, warnings, _flag(query, 'force'),
                                 query.get('fieldManager'))
            return answer(result, 200 if existed else 201)
        if method == 'DELETE':
            options = await self._delete_options(raw)
            obj, removed = store.delete(res, ns, name, options, dry_run)
            if removed and res.key not in _RETURNS_DELETED:
                details = {'name': name, 'kind': res.plural, 'uid': obj['metadata'].get('uid')}
                if res.group:
                    details['group'] = res.group
                return _json({'kind': 'Status', 'apiVersion': 'v1', 'metadata': {},
                              'status': 'Success', 'details': details})
            return answer(obj, 200 if removed else 202)
        raise ApiError.method_not_allowed()

    async def _body(self, raw):
        data = await raw.read()
        try:
            return json.loads(data or b'null')
        except ValueError as e:
            raise ApiError.bad_request(f"couldn't get version/kind; json parse error: {e}")

    async def _delete_options(self, raw):
        data = await raw.read()
        options = {}
        if data:
            try:
                options = json.loads(data) or {}
            except ValueError as e:
                raise ApiError.bad_request(f'invalid DeleteOptions: {e}')
        query = raw.query
        if 'propagationPolicy' in query:
            options['propagationPolicy'] = query['propagationPolicy']
        if 'gracePeriodSeconds' in query:
            options['gracePeriodSeconds'] = int(query['gracePeriodSeconds'])
        if 'orphanDependents' in query:
            options['orphanDependents'] = _flag(query, 'orphanDependents')
        policy = options.get('propagationPolicy')
        if policy not in (None, 'Orphan', 'Background', 'Foreground'):
            raise ApiError(422, 'Invalid', f'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: "{policy}": supported values: "Foreground", "Background", "Orphan", "nil"')
        return options

    def _selector(self, res, ns, query, name=None):
        fields = query.get('fieldSelector', '')
        if name is not None:
            fields = f'metadata.name={name}' + (',' + fields if fields else '')
        return Selector(ns if res.namespaced else None, query.get('labelSelector', ''), fields)

    def _list(self, res, ns, query):
        items, rv = self.store.list(res, self._selector(res, ns, query))
        meta = {'resourceVersion': str(rv)}
        limit = int(query.get('limit') or 0)
        start = 0
        if query.get('continue'):
            try:
                token = json.loads(urllib.parse.unquote(query['continue']))
                start, meta['resourceVersion'] = int(token['start']), str(token['rv'])
            except (ValueError, KeyError, TypeError):
                raise ApiError.bad_request('continue key is not valid')
        if limit > 0 and start + limit < len(items):
            meta['continue'] = json.dumps({'start': start + limit, 'rv': int(meta['resourceVersion'])})
            meta['remainingItemCount'] = len(items) - start - limit
            items = items[start:start + limit]
        else:
            items = items[start:]
        return _json({'kind': f'{res.kind}List', 'apiVersion': res.api_version,
                      'metadata': meta, 'items': items})

    async def _delete_collection(self, raw, res, ns, dry_run):
        options = await self._delete_options(raw)
        items, rv = self.store.list(res, self._selector(res, ns, raw.query))
        deleted = []
        for item in items:
            meta = item['metadata']
            try:
                obj, _ = self.store.delete(res, meta.get('namespace'), meta['name'], options, dry_run)
                deleted.append(obj)
            except ApiError as e:
                if e.code != 404:
                    raise
        return _json({'kind': f'{res.kind}List', 'apiVersion': res.api_version,
                      'metadata': {'resourceVersion': str(self.store.rv)}, 'items': deleted})

    async def _watch(self, raw, res, ns, name):
        query = raw.query
        store = self.store
        selector = self._selector(res, ns, query, name)
        timeout = float(query.get('timeoutSeconds') or 1800)
        bookmarks = _flag(query, 'allowWatchBookmarks')
        initial_events = _flag(query, 'sendInitialEvents')
        rv_param = query.get('resourceVersion', '')
        watcher = Watcher(res, selector)
        # Registered before the snapshot, with no await in between: nothing falls in the gap.
        store.watchers[res.key].add(watcher)
        first = []
        try:
            if initial_events or rv_param in ('', '0'):
                items, _ = store.list(res, selector)
                first = [('ADDED', item) for item in items]
            else:
                try:
                    since = int(rv_param)
                except ValueError:
                    raise ApiError.bad_request(f'invalid resource version: {rv_param}')
                replay = Watcher(res, selector)
                try:
                    for rv, kind, old, new in store.events_since(res, since):
                        replay.offer(rv, kind, old, new)
                except ApiError as e:
                    first = [('ERROR', e.status())]
                while not replay.queue.empty():
                    first.append(replay.queue.get_nowait())
            response = aiohttp.web.StreamResponse(status=200, headers={
                'Content-Type': 'application/json', 'Cache-Control': 'no-cache'})
            response.enable_chunked_encoding()
            await response.prepare(raw)

            async def send(kind, obj):
                if kind != 'ERROR':
                    obj = dict(obj, apiVersion=res.api_version)
                line = json.dumps({'type': kind, 'object': obj}, separators=(',', ':'))
                await response.write(line.encode() + b'\n')

            for kind, obj in first:
                await send(kind, obj)
            if any(kind == 'ERROR' for kind, _ in first):
                await response.write_eof()
                return response
            if initial_events:
                await send('BOOKMARK', {'kind': res.kind, 'apiVersion': res.api_version, 'metadata': {
                    'resourceVersion': str(store.rv),
                    'annotations': {'k8s.io/initial-events-end': 'true'}}})
            deadline = time.monotonic() + timeout
            next_bookmark = time.monotonic() + BOOKMARK_EVERY
            while True:
                now = time.monotonic()
                if now >= deadline:
                    break
                wait = min(deadline, next_bookmark) - now
                try:
                    kind, obj = await asyncio.wait_for(watcher.queue.get(), timeout=max(wait, 0.01))
                except asyncio.TimeoutError:
                    if bookmarks and time.monotonic() >= next_bookmark:
                        await send('BOOKMARK', {'kind': res.kind, 'apiVersion': res.api_version,
                                                'metadata': {'resourceVersion': str(store.rv)}})
                    if time.monotonic() >= next_bookmark:
                        next_bookmark = time.monotonic() + BOOKMARK_EVERY
                    continue
                await send(kind, obj)
            await response.write_eof()
            return response
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            return aiohttp.web.Response(status=499)
        finally:
            store.watchers[res.key].discard(watcher)
