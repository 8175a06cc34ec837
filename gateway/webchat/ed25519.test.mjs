// Tests for ed25519.js: node gateway/webchat/ed25519.test.mjs
import fs from 'node:fs';
import vm from 'node:vm';
import crypto from 'node:crypto';

vm.runInThisContext(fs.readFileSync(new URL('./ed25519.js', import.meta.url), 'utf8'), { filename: 'ed25519.js' });
const E = globalThis.PincerEd25519;

const hex = b => Buffer.from(b).toString('hex');
const unhex = s => new Uint8Array(Buffer.from(s, 'hex'));
let checks = 0, failures = 0;
function eq(got, want, what) {
  checks++;
  if (got !== want) { failures++; console.error(`FAIL ${what}\n  got  ${got}\n  want ${want}`); }
}

// RFC 8032 §7.1, TEST 1-3
const vectors = [
  ['9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
   'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a', '',
   'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b'],
  ['4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
   '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c', '72',
   '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00'],
  ['c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7',
   'fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025', 'af82',
   '6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a'],
];
vectors.forEach(([sk, pk, msg, sig], i) => {
  eq(hex(E.publicKey(unhex(sk))), pk, `RFC 8032 TEST ${i + 1} public key`);
  eq(hex(E.sign(unhex(sk), unhex(msg))), sig, `RFC 8032 TEST ${i + 1} signature`);
});

// SHA-512 against node:crypto
const sha = b => crypto.createHash('sha512').update(b).digest('hex');
for (const [name, s] of [['""', ''], ['"abc"', 'abc'], ['1e6 x "a"', 'a'.repeat(1e6)]]) {
  const b = new TextEncoder().encode(s);
  eq(hex(E.sha512(b)), sha(b), `SHA-512 of ${name}`);
}
// padding boundaries (lengths around 111/112/128 bytes)
for (const n of [111, 112, 127, 128, 129, 239, 240]) {
  const b = crypto.randomBytes(n);
  eq(hex(E.sha512(new Uint8Array(b))), sha(b), `SHA-512 of ${n} random bytes`);
}

// SHA-256 (the device id where crypto.subtle is missing) at the padding boundaries
for (const n of [0, 3, 55, 56, 63, 64, 65, 119, 120, 1000, 100000]) {
  const b = crypto.randomBytes(n);
  eq(hex(E.sha256(new Uint8Array(b))), crypto.createHash('sha256').update(b).digest('hex'), `SHA-256 of ${n} random bytes`);
}

// 200 random (seed, message) pairs against node:crypto Ed25519
const PKCS8 = Buffer.from('302e020100300506032b657004220420', 'hex');
const RANDOM = 200;
for (let i = 0; i < RANDOM; i++) {
  const seed = crypto.randomBytes(32), msg = crypto.randomBytes(crypto.randomInt(0, 301));
  const key = crypto.createPrivateKey({ key: Buffer.concat([PKCS8, seed]), format: 'der', type: 'pkcs8' });
  const pub = crypto.createPublicKey(key).export({ format: 'der', type: 'spki' }).subarray(-32);
  const s = new Uint8Array(seed), m = new Uint8Array(msg);
  eq(hex(E.publicKey(s)), hex(pub), `random #${i} public key (seed ${hex(seed)})`);
  eq(hex(E.sign(s, m)), hex(crypto.sign(null, msg, key)), `random #${i} signature (seed ${hex(seed)}, msg ${hex(msg)})`);
}

// bad input is rejected
checks++;
try { E.sign(new Uint8Array(31), new Uint8Array(0)); failures++; console.error('FAIL short seed accepted'); } catch {}

// timing: one sign of a 100-byte message (warm), and mean of 20
const seed = new Uint8Array(crypto.randomBytes(32)), msg = new Uint8Array(crypto.randomBytes(100));
E.sign(seed, msg);
let t = performance.now(); E.sign(seed, msg); const one = performance.now() - t;
t = performance.now(); for (let i = 0; i < 20; i++) E.sign(seed, msg); const avg = (performance.now() - t) / 20;

console.log(`${failures ? 'FAIL' : 'ok'}: ${checks - failures}/${checks} checks passed ` +
  `(RFC 8032 TEST 1-3, SHA-512 vs node:crypto, ${RANDOM} random Ed25519 pairs vs node:crypto); ` +
  `one sign(100 B) ${one.toFixed(2)} ms, mean of 20 ${avg.toFixed(2)} ms`);
process.exit(failures ? 1 : 0);
