"""Label and field selectors as the API server parses and applies them."""

import re

from .errors import ApiError

_KEY = r'(?:[a-zA-Z0-9](?:[-a-zA-Z0-9_.]*[a-zA-Z0-9])?/)?[a-zA-Z0-9](?:[-a-zA-Z0-9_.]*[a-zA-Z0-9])?'
_VALUE = r'(?:[a-zA-Z0-9](?:[-a-zA-Z0-9_.]*[a-zA-Z0-9])?)?'
_TOKEN = re.compile(
    r'\s*(?:(?P<op>==|!=|=|!)|(?P<paren>[(),])|(?P<word>[^\s(),=!]+))'
)


def _tokens(text):
    pos = 0
    out = []
    while pos < len(text):
        if text[pos:].strip() == '':
            break
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ApiError.bad_request(f'unable to parse requirement: invalid selector: {text!r}')
        pos = match.end()
        if match.group('op'):
            out.append(('op', match.group('op')))
        elif match.group('paren'):
            out.append((match.group('paren'), match.group('paren')))
        else:
            out.append(('word', match.group('word')))
    return out


def parse_label_selector(text):
    """`a=b,c!=d,e in (f,g),h notin (i),j,!k` → a list of (key, op, values)."""
    if not text or not text.strip():
        return []
    tokens = _tokens(text)
    reqs = []
    i = 0

    def fail(why):
        raise ApiError.bad_request(f'unable to parse requirement: {why}')

    while i < len(tokens):
        kind, tok = tokens[i]
        if kind == 'op' and tok == '!':
            if i + 1 >= len(tokens) or tokens[i + 1][0] != 'word':
                fail(f'found end of input, expected: identifier after \'!\' in {text!r}')
            key = tokens[i + 1][1]
            reqs.append((key, '!', []))
            i += 2
        elif kind == 'word':
            key = tok
            if not re.fullmatch(_KEY, key):
                fail(f'invalid label key "{key}"')
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            if nxt is not None and nxt[0] == 'word' and nxt[1] in ('in', 'notin'):
                nxt = ('op', nxt[1])
            if nxt is None or nxt[0] == ',':
                reqs.append((key, 'exists', []))
                i += 1
            elif nxt[0] == 'op' and nxt[1] in ('=', '==', '!='):
                value_tok = tokens[i + 2] if i + 2 < len(tokens) else None
                if value_tok is None or value_tok[0] == ',':
                    value = ''
                    i += 2
                elif value_tok[0] == 'word':
                    value = value_tok[1]
                    i += 3
                else:
                    fail(f'found \'{value_tok[1]}\', expected: identifier')
                if not re.fullmatch(_VALUE, value):
                    fail(f'invalid label value: "{value}"')
                reqs.append((key, '!=' if nxt[1] == '!=' else '=', [value]))
            elif nxt[0] == 'op' and nxt[1] in ('in', 'notin'):
                if i + 2 >= len(tokens) or tokens[i + 2][0] != '(':
                    fail(f'found \'{tokens[i + 2][1] if i + 2 < len(tokens) else "end"}\', expected: \'(\'')
                j = i + 3
                values = []
                while j < len(tokens) and tokens[j][0] != ')':
                    if tokens[j][0] == 'word':
                        values.append(tokens[j][1])
                    elif tokens[j][0] != ',':
                        fail(f'found \'{tokens[j][1]}\', expected: \',\', \')\' or identifier')
                    j += 1
                if j >= len(tokens):
                    fail('found end of input, expected: \')\'')
                reqs.append((key, nxt[1], values))
                i = j + 1
            else:
                fail(f'found \'{nxt[1]}\', expected: in, notin, =, ==, !=, gt, lt')
        else:
            fail(f'found \'{tok}\', expected: !, identifier, or \'end of string\'')
        if i < len(tokens):
            if tokens[i][0] != ',':
                fail(f'found \'{tokens[i][1]}\', expected: \',\' or \'end of string\'')
            i += 1
    return reqs


def labels_match(reqs, labels):
    labels = labels or {}
    for key, op, values in reqs:
        present = key in labels
        value = labels.get(key)
        if op == 'exists' and not present:
            return False
        if op == '!' and present:
            return False
        if op == '=' and (not present or value != values[0]):
            return False
        if op == '!=' and present and value == values[0]:
            return False
        if op == 'in' and (not present or value not in values):
            return False
        if op == 'notin' and present and value in values:
            return False
    return True


def parse_field_selector(text):
    """`metadata.name=x,spec.nodeName!=,status.phase==Running` → a list of (path, op, value)."""
    if not text or not text.strip():
        return []
    reqs = []
    for part in text.split(','):
        part = part.strip()
        if not part:
            continue
        match = re.fullmatch(r'([^=!]+)(==|=|!=)(.*)', part)
        if not match:
            raise ApiError.bad_request(f'invalid selector: \'{text}\'; can\'t understand \'{part}\'')
        reqs.append((match.group(1).strip(), '!=' if match.group(2) == '!=' else '=', match.group(3).strip()))
    return reqs


def field_value(obj, path):
    """A field of `obj` by its dotted path, as a string ('' when absent), the way the API server
    compares field selectors."""
    node = obj
    for part in path.split('.'):
        if not isinstance(node, dict):
            return ''
        node = node.get(part)
    if node is None:
        return ''
    if isinstance(node, bool):
        return 'true' if node else 'false'
    return str(node)


def fields_match(reqs, obj):
    for path, op, value in reqs:
        actual = field_value(obj, path)
        if op == '=' and actual != value:
            return False
        if op == '!=' and actual == value:
            return False
    return True


class Selector:
    """A parsed namespace + labelSelector + fieldSelector filter over objects."""

    def __init__(self, namespace=None, label_selector='', field_selector=''):
        self.namespace = namespace
        self.labels = parse_label_selector(label_selector)
        self.fields = parse_field_selector(field_selector)

    def matches(self, obj):
        if obj is None:
            return False
        meta = obj.get('metadata') or {}
        if self.namespace is not None and meta.get('namespace') != self.namespace:
            return False
        return labels_match(self.labels, meta.get('labels')) and fields_match(self.fields, obj)

