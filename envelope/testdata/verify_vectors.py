#!/usr/bin/env python3
# An independent implementation of docs/format.md (Python "cryptography",
# i.e. OpenSSL) that checks every vector in envelope/testdata/vectors.
# Run from the repository root: python3 envelope/testdata/verify_vectors.py
import json, glob, os, struct, hmac, hashlib
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding, InvalidUnwrap
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives import hashes
from cryptography.exceptions import InvalidTag
import base64
CLS={'critical':1,'high':2,'moderate':3,'low':4}
def lp(s): b=s.encode(); return struct.pack('>I',len(b))+b
def uvarint(b,i):
    v=0;s=0;n=0
    while True:
        c=b[i+n]; v|=(c&0x7f)<<s; n+=1
        if c<0x80: return v,n
        s+=7
def hkdf(k,info,n): return HKDF(hashes.SHA256(),n,None,info).derive(k)
ok=0
for f in sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)),'vectors','*.json'))):
    v=json.load(open(f)); name=os.path.basename(f)
    keks={int(k):bytes.fromhex(x) for k,x in v['keks'].items()}
    cb=bytes([CLS[v['class']]])
    if v['op']=='blind-index':
        S=keks[(v.get('search_keks') or [1])[0]]
        k=hkdf(S,b'fieldcrypt/v1/blind-index-hmac-sha256'+cb+lp(v['tenant'])+lp(v['table'])+lp(v['column'])+lp(v['blind_index']['name'] or v['column'])+lp('hmac'),32)
        out=hmac.new(k,bytes.fromhex(v['value_hex']),hashlib.sha256).digest()[:v['blind_index']['size']]
        assert out.hex()==v['output_hex'],name; ok+=1; continue
    c=v['ciphertext']
    ct=base64.b64decode(c[4:]+'='*(-len(c[4:])%4)) if c.startswith('fc1:') else bytes.fromhex(c)
    try:
        if len(ct)<6 or ct[0]!=0xfc: raise ValueError('malformed')
        if ct[1]!=1 or ct[2] not in (1,2,3,4): raise ValueError('unsupported-version')
        if ct[3]&~1 or ct[4] not in (1,2,3,4): raise ValueError('malformed')
        ver,n=uvarint(ct,5)
        if len(ct[5:5+n])!=n or n!=len(struct.pack('B',0)) and ver<(1<<(7*(n-1))): raise ValueError('malformed')
        hdr=ct[:5+n]; rest=ct[5+n:]
        if ct[4]!=cb[0]: raise ValueError('authentication')
        if ct[2] in (1,3,4):
            w=48 if ct[2]==4 else 40
            if len(rest)<w+16: raise ValueError('malformed')
            if ver not in keks: raise ValueError('unknown-key')
            rowbound=ct[3]&1
            if rowbound and not v['row']: raise ValueError('authentication')
            # suite 0x01 wraps the DEK under the KEK itself, suite 0x03 under
            # K_wrap = HKDF(KEK, "fieldcrypt/v1/kek-wrap" || class || LP(tenant) || uint32be(version)),
            # both with AES-KWP; suite 0x04 with AES-SIV (one empty associated-data
            # component) under K_wrap_siv = HKDF(KEK, "fieldcrypt/v1/kek-wrap-siv" || ..., 64 bytes)
            ref=cb+lp(v['tenant'])+struct.pack('>I',ver)
            try:
                if ct[2]==4: dek=AESSIV(hkdf(keks[ver],b'fieldcrypt/v1/kek-wrap-siv'+ref,64)).decrypt(rest[:48],[b''])
                else: dek=aes_key_unwrap_with_padding(keks[ver] if ct[2]==1 else hkdf(keks[ver],b'fieldcrypt/v1/kek-wrap'+ref,32),rest[:40])
            except (InvalidUnwrap,InvalidTag): raise ValueError('authentication')
            if len(dek)!=32: raise ValueError('authentication')
            aad=b'fieldcrypt/v1/data\x00'+ct[:5]+lp(v['tenant'])+lp(v['table'])+lp(v['column'])+lp(v['row'] if rowbound else '')
            try: pt=AESGCM(dek).decrypt(b'\x00'*12,rest[w:],aad)
            except Exception: raise ValueError('authentication')
        else:
            if ver not in keks: raise ValueError('unknown-key')
            k=hkdf(keks[ver],b'fieldcrypt/v1/deterministic-aes-siv'+cb+lp(v['tenant'])+lp(v['table'])+lp(v['column']),64)
            aad=b'fieldcrypt/v1/siv\x00'+hdr+lp(v['tenant'])+lp(v['table'])+lp(v['column'])
            try: pt=AESSIV(k).decrypt(rest,[aad])
            except Exception: raise ValueError('authentication')
        assert not v.get('error'), (name,'opened but expected',v.get('error'))
        assert pt.hex()==v['plaintext_hex'],name; ok+=1
    except ValueError as e:
        assert v.get('error')==str(e),(name,str(e),v.get('error')); ok+=1
print(ok,'vectors verified independently')
