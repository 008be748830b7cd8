"""The four patch formats of the API server: JSON merge patch (RFC 7386), strategic merge patch
(lists merged by their schema's merge key), JSON patch (RFC 6902) and server-side apply (merged
like a strategic patch, after removing what the same field manager applied before and no longer
applies)."""

import copy

from .errors import ApiError


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target, patch, schema):
    """`schema` is the SchemaNode of `target`."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get('$patch') == 'replace':
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != '$patch'}
    if patch.get('$patch') == 'delete':
        return None
    result = dict(target) if isinstance(target, dict) else {}
    retain = patch.get('$retainKeys')
    for key, value in patch.items():
        if key in ('$patch', '$retainKeys') or key.startswith('$setElementOrder/'):
            continue
        if key.startswith('$deleteFromPrimitiveList/'):
            field = key.split('/', 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [item for item in result[field] if item not in (value or [])]
            continue
        if value is None:
            result.pop(key, None)
            continue
        child = schema.child(key)
        current = result.get(key)
        if isinstance(value, list):
            result[key] = _merge_list(current, value, child)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(current, value, child)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = copy.deepcopy(value)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(current, patch, schema):
    strategy, merge_key = schema.list_strategy()
    if strategy != 'merge' or not isinstance(current, list):
        return [_strip_directives(item) for item in patch
                if not (isinstance(item, dict) and item.get('$patch') == 'delete')]
    if merge_key is None:
        # A set of primitives: union, keeping the existing order.
        result = list(current)
        for item in patch:
            if item not in result:
                result.append(copy.deepcopy(item))
        return result
    result = [copy.deepcopy(item) for item in current]
    items = schema.items()
    for item in patch:
        if not isinstance(item, dict):
            continue
        if item.get('$patch') == 'replace':
            return [_strip_directives(i) for i in patch if i.get('$patch') != 'replace']
        key = item.get(merge_key)
        index = next((i for i, old in enumerate(result)
                      if isinstance(old, dict) and old.get(merge_key) == key), None)
        if item.get('$patch') == 'delete':
            if index is not None:
                result.pop(index)
            continue
        if index is None:
            result.append(_strip_directives(item))
        else:
            result[index] = strategic_merge_patch(result[index], item, items)
    return result


def _strip_directives(value):
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items()
                if not k.startswith('$')}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return copy.deepcopy(value)


def _pointer(path):
    if path == '':
        return []
    if not path.startswith('/'):
        raise ApiError(422, 'Invalid', f'the server rejected our request due to an error in our request: invalid JSON pointer {path!r}')
    return [p.replace('~1', '/').replace('~0', '~') for p in path[1:].split('/')]


def _walk(doc, parts, path):
    node = doc
    for part in parts:
        if isinstance(node, list):
            try:
                node = node[int(part)]
            except (ValueError, IndexError):
                raise _patch_error(f'unable to find the path {path}')
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise _patch_error(f'doc is missing path: "{path}": missing value')
    return node


def _patch_error(message):
    return ApiError(422, 'Invalid', f'the server rejected our request due to an error in our request: {message}')


def json_patch(doc, operations):
    if not isinstance(operations, list):
        raise ApiError.bad_request('json: cannot unmarshal object into Go value of type jsonpatch.Patch')
    doc = copy.deepcopy(doc)
    for op in operations:
        kind, path = op.get('op'), op.get('path', '')
        parts = _pointer(path)
        if kind == 'test':
            if _walk(doc, parts, path) != op.get('value'):
                raise _patch_error(f'testing value {path} failed: test failed')
            continue
        if kind in ('move', 'copy'):
            from_parts = _pointer(op.get('from', ''))
            value = copy.deepcopy(_walk(doc, from_parts, op.get('from')))
            if kind == 'move':
                doc = _remove(doc, from_parts, op.get('from'))
            doc = _add(doc, parts, value, path)
        elif kind == 'add':
            doc = _add(doc, parts, copy.deepcopy(op.get('value')), path)
        elif kind == 'remove':
            doc = _remove(doc, parts, path)
        elif kind == 'replace':
            doc = _remove(doc, parts, path)
            doc = _add(doc, parts, copy.deepcopy(op.get('value')), path)
        else:
            raise _patch_error(f'Unexpected kind: {kind}')
    return doc


def _add(doc, parts, value, path):
    if not parts:
        return value
    parent = _walk(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, list):
        if last == '-':
            parent.append(value)
        else:
            try:
                index = int(last)
            except ValueError:
                raise _patch_error(f'invalid index {last!r} in {path}')
            if index > len(parent):
                raise _patch_error(f'add operation does not apply: doc is missing path: "{path}"')
            parent.insert(index, value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise _patch_error(f'add operation does not apply: doc is missing path: "{path}"')
    return doc


def _remove(doc, parts, path):
    if not parts:
        return None
    parent = _walk(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, list):
        try:
            parent.pop(int(last))
        except (ValueError, IndexError):
            raise _patch_error(f'remove operation does not apply: doc is missing path: "{path}"')
    elif isinstance(parent, dict) and last in parent:
        del parent[last]
    else:
        raise _patch_error(f'remove operation does not apply: doc is missing path: "{path}": missing value')
    return doc


def prune_unapplied(obj, previous, applied, schema):
    """Removes from `obj` what `previous` (a manager's last applied configuration) set and
    `applied` (its new one) no longer sets: server-side apply's ownership, for one manager."""
    if not isinstance(obj, dict) or not isinstance(previous, dict):
        return
    applied = applied if isinstance(applied, dict) else {}
    for key, before in previous.items():
        if key in ('apiVersion', 'kind') or (key == 'metadata' and not isinstance(before, dict)):
            continue
        if key not in applied:
            if key not in ('metadata', 'name', 'namespace'):
                obj.pop(key, None)
            continue
        now = applied[key]
        child = schema.child(key)
        if isinstance(before, dict) and isinstance(now, dict):
            prune_unapplied(obj.get(key), before, now, child)
        elif isinstance(before, list) and isinstance(now, list) and isinstance(obj.get(key), list):
            strategy, merge_key = child.list_strategy()
            if strategy != 'merge':
                continue
            if merge_key is None:
                gone = [item for item in before if item not in now]
                obj[key] = [item for item in obj[key] if item not in gone]
                continue
            keys_now = {item.get(merge_key) for item in now if isinstance(item, dict)}
            gone = {item.get(merge_key) for item in before if isinstance(item, dict)} - keys_now
            obj[key] = [item for item in obj[key]
                        if not (isinstance(item, dict) and item.get(merge_key) in gone)]
            for item in obj[key]:
                if not isinstance(item, dict):
                    continue
                prev_item = next((i for i in before if isinstance(i, dict) and i.get(merge_key) == item.get(merge_key)), None)
                new_item = next((i for i in now if isinstance(i, dict) and i.get(merge_key) == item.get(merge_key)), None)
                prune_unapplied(item, prev_item, new_item, child.items())
