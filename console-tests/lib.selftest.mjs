// Self-check of lib.mjs's TOTP against the RFC 6238 appendix B test vectors
// (HMAC-SHA-1). Needs no browser. Run: node console-tests/lib.selftest.mjs
import { base32Decode, totp } from './lib.mjs';

let failures = 0;
function check(what, got, want) {
  if (got === want) {
    console.log(`ok - ${what}`);
  } else {
    failures += 1;
    console.log(`not ok - ${what}: got ${got}, want ${want}`);
  }
}

// The RFC's SHA-1 seed is the ASCII string "12345678901234567890".
const secret = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ';
check('base32 decode of the RFC seed', base32Decode(secret).toString('latin1'), '12345678901234567890');
check('base32 decode ignores case, spaces and padding', base32Decode('gezd gnbv gy======').toString('latin1'), '123456');

const vectors = [
  [59, '94287082'],
  [1111111109, '07081804'],
  [1111111111, '14050471'],
  [1234567890, '89005924'],
  [2000000000, '69279037'],
  [20000000000, '65353130'],
];
for (const [t, code] of vectors) {
  check(`T=${t} 8 digits`, totp(secret, t * 1000, { digits: 8 }), code);
  check(`T=${t} 6 digits`, totp(secret, t * 1000), code.slice(2));
}
check('same 30 s step gives the same code', totp(secret, 30_000), totp(secret, 59_999));
check('next step differs', totp(secret, 59_999) !== totp(secret, 60_000), true);

if (failures > 0) {
  console.log(`# ${failures} failure(s)`);
  process.exit(1);
}
