// Ed25519 signing (RFC 8032 §5.1) with SHA-512 (FIPS 180-4), BigInt based.
// Works where crypto.subtle is missing (plain-http pages). Not constant-time.
// Defines globalThis.PincerEd25519 = { publicKey(seed), sign(seed, msg), sha512(bytes) }.
(function (g) {
  'use strict';

  // ---- SHA-512 (64-bit words as BigInt) ----
  const M64 = (1n << 64n) - 1n;
  // floor(n^(1/k)) by Newton's method from above
  function iroot(n, k) {
    let x = 1n << BigInt(Math.ceil(n.toString(2).length / Number(k)) + 1), y;
    for (;;) { y = ((k - 1n) * x + n / x ** (k - 1n)) / k; if (y >= x) return x; x = y; }
  }
  const P = [];
  for (let n = 2; P.length < 80; n++) if (P.every(q => n % q)) P.push(n);
  // K: fractional cube roots of the first 80 primes; IV: fractional square roots of the first 8
  const K = P.map(q => iroot(BigInt(q) << 192n, 3n) & M64);
  const IV = P.slice(0, 8).map(q => iroot(BigInt(q) << 128n, 2n) & M64);
  const rotr = (x, n) => (x >> n | x << (64n - n)) & M64;
  const S0 = x => rotr(x, 28n) ^ rotr(x, 34n) ^ rotr(x, 39n);
  const S1 = x => rotr(x, 14n) ^ rotr(x, 18n) ^ rotr(x, 41n);
  const s0 = x => rotr(x, 1n) ^ rotr(x, 8n) ^ x >> 7n;
  const s1 = x => rotr(x, 19n) ^ rotr(x, 61n) ^ x >> 6n;

  function sha512(msg) {
    const len = msg.length, n = Math.ceil((len + 17) / 128) * 128;
    const buf = new Uint8Array(n);
    buf.set(msg); buf[len] = 0x80; // pad: 1 bit, zeros, 128-bit bit length
    const v = new DataView(buf.buffer);
    v.setBigUint64(n - 8, BigInt(len) * 8n);
    const H = IV.slice(), W = new Array(80);
    for (let o = 0; o < n; o += 128) {
      for (let t = 0; t < 80; t++) {
        W[t] = t < 16 ? v.getBigUint64(o + 8 * t)
          : (s1(W[t - 2]) + W[t - 7] + s0(W[t - 15]) + W[t - 16]) & M64;
      }
      let [a, b, c, d, e, f, gg, h] = H;
      for (let t = 0; t < 80; t++) {
        const t1 = h + S1(e) + (gg ^ (e & (f ^ gg))) + K[t] + W[t];
        const t2 = S0(a) + ((a & b) | (c & (a | b)));
        h = gg; gg = f; f = e; e = (d + t1) & M64;
        d = c; c = b; b = a; a = (t1 + t2) & M64;
      }
      [a, b, c, d, e, f, gg, h].forEach((x, i) => { H[i] = (H[i] + x) & M64; });
    }
    const out = new Uint8Array(64), ov = new DataView(out.buffer);
    H.forEach((x, i) => ov.setBigUint64(8 * i, x));
    return out;
  }

  // ---- Ed25519 ----
  const p = 2n ** 255n - 19n;
  const L = 2n ** 252n + 27742317777372353535851937790883648493n; // group order
  const mod = a => (a %= p) < 0n ? a + p : a;
  function inv(b) { // b^(p-2) mod p
    let r = 1n;
    for (let e = p - 2n, x = mod(b); e > 0n; e >>= 1n, x = x * x % p) if (e & 1n) r = r * x % p;
    return r;
  }
  const d2 = mod(-2n * 121665n * inv(121666n)); // 2*d
  // Base point (x, 4/5) in extended coordinates [X, Y, Z, T], x = X/Z, y = Y/Z, T = XY/Z
  const Bx = 15112221349535400772501151409588531511454012693041857206046113283949847762202n;
  const By = 46316835694926478169428394003475163141307993866256225615783033603165251855960n;
  const B = [Bx, By, 1n, Bx * By % p];

  // Unified addition for a = -1 (RFC 8032 §5.1.4); also used for doubling.
  // Coordinates stay in (-p, p); reduced fully only when encoding.
  function add([X1, Y1, Z1, T1], [X2, Y2, Z2, T2]) {
    const A = (Y1 - X1) * (Y2 - X2) % p, Bb = (Y1 + X1) * (Y2 + X2) % p;
    const C = T1 * d2 % p * T2 % p, D = 2n * Z1 * Z2 % p;
    const E = Bb - A, F = D - C, G = D + C, H = Bb + A;
    return [E * F % p, G * H % p, F * G % p, E * H % p];
  }
  function mul(Pt, k) { // double-and-add, LSB first
    let R = [0n, 1n, 1n, 0n];
    for (; k > 0n; k >>= 1n, Pt = add(Pt, Pt)) if (k & 1n) R = add(R, Pt);
    return R;
  }
  const le = n => { const b = new Uint8Array(32); for (let i = 0; i < 32; i++, n >>= 8n) b[i] = Number(n & 255n); return b; };
  const num = b => { let n = 0n; for (let i = b.length; i--;) n = n << 8n | BigInt(b[i]); return n; };
  const cat = (...a) => { const o = new Uint8Array(a.reduce((n, x) => n + x.length, 0)); let i = 0; for (const x of a) { o.set(x, i); i += x.length; } return o; };
  function enc([X, Y, Z]) { // 32 bytes: y little-endian, top bit = low bit of x
    const zi = inv(Z);
    return le(mod(Y * zi) | (mod(X * zi) & 1n) << 255n);
  }
  function expand(seed) {
    if (!(seed instanceof Uint8Array) || seed.length !== 32) throw new TypeError('seed must be a 32-byte Uint8Array');
    const h = sha512(seed);
    const a = num(h.subarray(0, 32)) & ((1n << 254n) - 8n) | 1n << 254n; // clamp
    return { a, prefix: h.subarray(32), A: enc(mul(B, a)) };
  }

  function sign(seed, msg) {
    const { a, prefix, A } = expand(seed);
    const r = num(sha512(cat(prefix, msg))) % L, R = enc(mul(B, r));
    const k = num(sha512(cat(R, A, msg))) % L;
    return cat(R, le((r + k * a) % L));
  }

  // SHA-256 (FIPS 180-4), for the device id (hex of the public key's digest) where
  // crypto.subtle is missing. Constants from the primes' roots, as for SHA-512 above.
  const K256 = [], H256 = [];
  for (let n = 2, i = 0; i < 64; n++) {
    let prime = true;
    for (let d = 2; d * d <= n; d++) if (n % d === 0) { prime = false; break; }
    if (!prime) continue;
    if (i < 8) H256.push((Math.sqrt(n) % 1) * 2 ** 32 >>> 0);
    K256.push((Math.cbrt(n) % 1) * 2 ** 32 >>> 0);
    i++;
  }
  function sha256(msg) {
    const len = msg.length, blocks = ((len + 9 + 63) >> 6) << 6, m = new Uint8Array(blocks);
    m.set(msg); m[len] = 0x80;
    const dv = new DataView(m.buffer);
    dv.setUint32(blocks - 8, Math.floor(len / 2 ** 29)); dv.setUint32(blocks - 4, len << 3 >>> 0);
    const h = H256.slice(), w = new Uint32Array(64);
    const rotr = (x, n) => x >>> n | x << 32 - n;
    for (let o = 0; o < blocks; o += 64) {
      for (let t = 0; t < 64; t++) {
        if (t < 16) w[t] = dv.getUint32(o + 4 * t);
        else {
          const a = w[t - 15], b = w[t - 2];
          w[t] = w[t - 16] + (rotr(a, 7) ^ rotr(a, 18) ^ a >>> 3) + w[t - 7] + (rotr(b, 17) ^ rotr(b, 19) ^ b >>> 10);
        }
      }
      let [A, B2, C, D, E, F, G, H] = h;
      for (let t = 0; t < 64; t++) {
        const t1 = H + (rotr(E, 6) ^ rotr(E, 11) ^ rotr(E, 25)) + (E & F ^ ~E & G) + K256[t] + w[t] >>> 0;
        const t2 = (rotr(A, 2) ^ rotr(A, 13) ^ rotr(A, 22)) + (A & B2 ^ A & C ^ B2 & C) >>> 0;
        H = G; G = F; F = E; E = D + t1 >>> 0; D = C; C = B2; B2 = A; A = t1 + t2 >>> 0;
      }
      [A, B2, C, D, E, F, G, H].forEach((v, i) => { h[i] = h[i] + v >>> 0; });
    }
    const out = new Uint8Array(32), od = new DataView(out.buffer);
    h.forEach((v, i) => od.setUint32(4 * i, v));
    return out;
  }

  g.PincerEd25519 = Object.freeze({ publicKey: seed => expand(seed).A, sign, sha512, sha256 });
})(globalThis);
