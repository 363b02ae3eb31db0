"""The Rust wire codec against ZEO 6.2's own encoder and decoders.

ZEO.asyncio.marshal encodes a representative set of messages; `zeoraid debug decode`
must print exactly Python's repr() of what ZEO's decoders return, and
`zeoraid debug reencode` must produce byte-identical payloads that ZEO's decoders
read back to equal values.
"""
import math

import pytest
from ZEO.asyncio.marshal import decoder
from ZEO.asyncio.marshal import encoder
from ZEO.asyncio.marshal import pickle_decode
from ZEO.asyncio.marshal import pickle_server_decode
from ZEO.asyncio.marshal import reduce_exception
from ZODB import POSException

OID = b'\0\0\0\0\0\0\0\x01'
Z64 = b'\0' * 8
MAXTID = b'\x7f\xff\xff\xff\xff\xff\xff\xff'
TID = b'\x04\r6\xde\x84:\xaf\xee'


def _exceptions():
    return [
        POSException.ConflictError(oid=OID, serials=(TID, Z64)),
        POSException.ReadConflictError(oid=OID, serials=(TID, Z64)),
        POSException.BTreesConflictError(1, 2, 3, 4),
        POSException.POSKeyError(OID),
        POSException.ReadOnlyError(),
        POSException.StorageTransactionError(None, 140128194275024),
        POSException.StorageTransactionError('Already voting (locked)'),
        POSException.UndoError('nope', OID),
        POSException.MultipleUndoErrors([('first', OID), ('second', Z64)]),
        ValueError('unknown storage: 2'),
        KeyError(3),
        AttributeError('new_oid'),
    ]


def messages():
    """(msgid, flag, name, args) tuples covering what ZEO sends both ways."""
    msgs = [
        (1, False, 'register', ('1', False)),
        (1, False, 'register', ('1', 0)),
        (0, True, 'storea', (OID, Z64, b'x' * 300, 140128194275024)),
        (0, True, 'tpc_begin', (140128194275024, b'user', b'desc \xff', {}, None, ' ')),
        ((OID, MAXTID), False, 'loadBefore', (OID, MAXTID)),
        ((OID, MAXTID), 0, '.reply', (b'data' * 70, TID, None)),
        (7, 0, '.reply', None),
        (-1, 0, '.reply', None),
        (8, 0, '.reply', [OID] * 100),
        (9, 0, '.reply', (0, 255, 256, 65535, 65536, -1, -256, 2**31 - 1, 2**31,
                          2**63 - 1, -2**63, 2**64 - 1)),
        (10, 0, '.reply', (2**64, -2**63 - 1, 2**2100, -2**2100)),
        (11, 0, '.reply', ('héllo wörld ☃ 😀', '', "it's", 'both \' and "', 'tab\there\n',
                           '\x00\x7f\xa0\u2028', 'x' * 70000)),
        (12, 0, '.reply', (1795459110.9912295, 1e16, 1e15, 0.0001, 1e-05, -0.0, 1.5e-7,
                           float('inf'), float('-inf'), 123.456, 5e-324)),
        (13, 0, '.reply', list(range(1001))),
        (14, 0, '.reply', {f'k{i}': i for i in range(1000)}),
        (15, 0, '.reply', {f'k{i}': i for i in range(1001)}),
        (16, 0, '.reply', {'a': {'b': [1, (2, 3), {'c': None}]}, (1, b'k'): [[], (), {}],
                           'single': [5], 'one': {'x': True}}),
        (17, 0, '.reply', [{'time': 1700000000.25, 'user_name': b'', 'description': b'd',
                            'tid': TID, 'size': 123, 'ext': {'k': 'v'}}]),
        (0, True, 'invalidateTransaction', (TID, [OID, Z64])),
        (0, True, 'info', ({'length': 2, 'size': 595},)),
        (18, 0, '.reply', (b'\x00' * 255, b'\x01' * 256, b"'", b'"\'', bytes(range(256)))),
    ]
    for i, exc in enumerate(_exceptions()):
        msgs.append((100 + i, 2, '.reply', reduce_exception(exc)))
    return msgs


CODECS = {
    'pickle': dict(
        encoders=[encoder(b'Z5'), encoder(b'Z5', server=True)],
        decoders=[pickle_server_decode, pickle_decode],
    ),
    'msgpack': dict(
        encoders=[encoder(b'M5', server=True), encoder(b'M5')],
        decoders=[decoder(b'M5')],
    ),
}


def encoded_cases(codec):
    """(python_value_decoded_by_zeo, payload) for every message the codec can encode."""
    encode = CODECS[codec]['encoders'][0]
    decode = CODECS[codec]['decoders'][0]
    cases = []
    for msg in messages():
        try:
            payload = encode(*msg)
        except OverflowError:
            assert codec == 'msgpack'  # ints beyond 64 bits
            continue
        for other in CODECS[codec]['encoders'][1:]:
            assert other(*msg) == payload
        try:
            value = decode(payload)
        except ValueError:
            assert codec == 'msgpack'  # non-str map keys (strict_map_key)
            continue
        cases.append((value, payload))
    return cases


def run_lines(zeoraid, command, codec, payloads):
    result = zeoraid('debug', command, '--encoding', codec,
                     input=''.join(p.hex() + '\n' for p in payloads))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(payloads)
    return lines


def same(a, b):
    """Equality that also tells -0.0 from 0.0 and accepts nan == nan."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return (type(b) is dict and list(a) == list(b)
                and all(same(a[k], b[k]) for k in a))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize('codec', sorted(CODECS))
def test_rust_decodes_to_python_repr(zeoraid, codec):
    cases = encoded_cases(codec)
    assert len(cases) >= 30
    lines = run_lines(zeoraid, 'decode', codec, [payload for _, payload in cases])
    for (value, payload), line in zip(cases, lines):
        assert line == repr(value), payload.hex()


@pytest.mark.parametrize('codec', sorted(CODECS))
def test_rust_reencodes_byte_identically(zeoraid, codec):
    cases = encoded_cases(codec)
    lines = run_lines(zeoraid, 'reencode', codec, [payload for _, payload in cases])
    for (value, payload), line in zip(cases, lines):
        rust_bytes = bytes.fromhex(line)
        assert rust_bytes == payload, value
        for decode in CODECS[codec]['decoders']:
            assert same(decode(rust_bytes), value)


def test_reduce_exception_forms_are_what_rust_types():
    """The error payload shapes the Rust `ErrorPayload` builds (keys in this order)."""
    forms = {name: details for name, details in
             (reduce_exception(e) for e in _exceptions())}
    assert list(forms['ZODB.POSException.ConflictError']) == ['message', 'oid', 'class_name', 'serials']
    assert list(forms['ZODB.POSException.BTreesConflictError']) == ['p1', 'p2', 'p3', 'reason']
    assert list(forms['ZODB.POSException.UndoError']) == ['_reason', '_oid']
    assert list(forms['ZODB.POSException.MultipleUndoErrors']) == ['_reason', '_oid', '_errs']
    assert forms['ZODB.POSException.POSKeyError'] == (OID,)
    assert forms['ZODB.POSException.ReadOnlyError'] == ()


def test_msgpack_map_keys_are_strict_like_zeo(zeoraid):
    payload = encoder(b'M5')(1, 0, '.reply', {(1, 2): 3})
    with pytest.raises(ValueError):
        decoder(b'M5')(payload)
    result = zeoraid('debug', 'decode', '--encoding', 'msgpack', input=payload.hex() + '\n')
    assert result.returncode == 1
    assert result.stdout.startswith('ERROR:')


def test_rust_reports_undecodable_payloads(zeoraid):
    result = zeoraid('debug', 'decode', '--encoding', 'pickle',
                     input='80034e2e\n8003\nnot-hex\n')
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == 'None'
    assert lines[1].startswith('ERROR:')
    assert lines[2].startswith('ERROR:')
