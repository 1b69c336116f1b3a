// Fixed Ed25519 keys for the tests, from seeds as the Rust tests make them
// (`SigningKey::from_seed([5; 32])`, `[6; 32]`): WebCrypto imports a seed as PKCS#8, whose DER
// wrapping for Ed25519 is this fixed 16-byte prefix.

const PKCS8_PREFIX = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]);

/** The private key of a 32-byte seed, for signing. */
export function importSeed(seed) {
  const der = new Uint8Array(PKCS8_PREFIX.length + 32);
  der.set(PKCS8_PREFIX);
  der.set(seed, PKCS8_PREFIX.length);
  return crypto.subtle.importKey('pkcs8', der, { name: 'Ed25519' }, false, ['sign']);
}

function key(byte, publicKey) {
  return { publicKey, privateKey: () => importSeed(new Uint8Array(32).fill(byte)) };
}

// The public keys, base64 (the Rust side derives the same from the seeds; frame.test.mjs checks
// the first against testdata/frame-vectors.json).
export const SIGNING_KEYS = {
  seed5: key(5, 'bnoc3Smwt4/ROvTFWY/v9O8qlxZuPKby5Pv8zYBQW/E='),
  seed6: key(6, 'iodf/x6zhFFXes1a/uQFRWVo3XyJ4JCGOgVXvHr0nxc='),
};
