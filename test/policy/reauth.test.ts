/**
 * Rotation after privilege escalation [C-SESS-5]: which token claims count as a new
 * authentication of the session's user (pure functions of src/policy/reauth.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { authContextOf, parseAuthContext, reauthentication } from '../../src/policy/reauth.ts';

describe('Session authentication context (rotation after re-authentication)', () => {
  it('[C-SESS-5] reads auth_time and acr from validated claims, ignoring malformed values', () => {
    assert.deepEqual(authContextOf({ auth_time: 1700000000, acr: 'urn:mfa', amr: ['otp'] }), {
      authTime: 1700000000,
      acr: 'urn:mfa',
    });
    assert.deepEqual(authContextOf({ auth_time: '1700000000', acr: 42 }), {});
    assert.deepEqual(authContextOf({ auth_time: Number.NaN, acr: '' }), {});
    assert.deepEqual(authContextOf(undefined), {});
  });

  it('[C-SESS-5] a stored context is read back only when well formed', () => {
    assert.deepEqual(parseAuthContext({ authTime: 5, acr: 'urn:pwd' }), { authTime: 5, acr: 'urn:pwd' });
    assert.deepEqual(parseAuthContext({}), {});
    assert.equal(parseAuthContext(undefined), undefined);
    assert.equal(parseAuthContext([]), undefined);
    assert.equal(parseAuthContext({ authTime: 'x' }), undefined);
    assert.equal(parseAuthContext({ acr: 1 }), undefined);
  });

  it('[C-SESS-5] a different acr is a step-up, in either direction and from or to none', () => {
    assert.equal(
      reauthentication({ acr: 'urn:pwd', authTime: 10 }, { acr: 'urn:mfa', authTime: 20 }),
      'step_up',
    );
    assert.equal(
      reauthentication({ acr: 'urn:pwd', authTime: 10 }, { acr: 'urn:mfa', authTime: 10 }),
      'step_up',
    );
    assert.equal(reauthentication({}, { acr: 'urn:mfa' }), 'step_up');
    assert.equal(reauthentication({ acr: 'urn:mfa' }, {}), 'step_up');
  });

  it('[C-SESS-5] a later auth_time with the same acr is a re-authentication', () => {
    assert.equal(
      reauthentication({ acr: 'urn:pwd', authTime: 10 }, { acr: 'urn:pwd', authTime: 11 }),
      'reauthenticated',
    );
    assert.equal(reauthentication({ authTime: 10 }, { authTime: 3600 }), 'reauthenticated');
  });

  it('[C-SESS-5] a refreshed token (same auth_time and acr), an older sign-in or no auth_time never rotates', () => {
    assert.equal(
      reauthentication({ acr: 'urn:pwd', authTime: 10 }, { acr: 'urn:pwd', authTime: 10 }),
      undefined,
    );
    assert.equal(
      reauthentication({ acr: 'urn:pwd', authTime: 10 }, { acr: 'urn:pwd', authTime: 9 }),
      undefined,
    );
    assert.equal(reauthentication({ authTime: 10 }, {}), undefined);
    assert.equal(reauthentication({}, { authTime: 10 }), undefined);
    assert.equal(reauthentication({}, {}), undefined);
  });
});
