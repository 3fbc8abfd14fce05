// End-to-end checks of provider.mjs over plain HTTP (no cookies, no browser). Run: node --test
import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

const CLIENT_ID = 'confab-desktop';
const APP_REDIRECT = 'app.confab.desktop://oauth/callback';
const LOOPBACK_REDIRECT = 'http://127.0.0.1/callback'; // registered without a port (RFC 8252 7.3)
const RESOURCE = 'http://127.0.0.1:8787';
const ACCESS_TTL = 120;
const PROVIDER = fileURLToPath(new URL('./provider.mjs', import.meta.url));

// Every provider started, so that one a failed test left running is still stopped.
const started = new Set();

// Starts provider.mjs (in memory unless `env` says otherwise); resolves once it printed its issuer.
async function startProvider({ port = 0, env = {} } = {}) {
  const proc = spawn(process.execPath, [PROVIDER, '--port', String(port)], {
    env: {
      ...process.env,
      OIDC_PORT: '',
      OIDC_EXTRA_REDIRECTS: LOOPBACK_REDIRECT,
      OIDC_ACCESS_TTL: String(ACCESS_TTL),
      OIDC_RESOURCE: RESOURCE,
      OIDC_CLIENT_ID: CLIENT_ID,
      OIDC_JWKS_FILE: '',
      OIDC_STATE_FILE: '',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.add(proc);
  const p = { proc, stdout: '', stderr: '' };
  proc.stderr.setEncoding('utf8').on('data', (d) => { p.stderr += d; });
  proc.stdout.setEncoding('utf8').on('data', (d) => { p.stdout += d; });
  p.issuer = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no issuer line; stderr:\n${p.stderr}`)), 30000);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`provider exited ${code}; stderr:\n${p.stderr}`));
    });
    proc.stdout.on('data', () => {
      const m = /^issuer=(http:\/\/127\.0\.0\.1:\d+)\n/.exec(p.stdout);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
  });
  return p;
}

// SIGTERM must end it with code 0, having printed exactly one line on stdout, ever.
async function stopProvider(p) {
  if (p.proc.exitCode === null && p.proc.signalCode === null) {
    const exited = once(p.proc, 'exit');
    p.proc.kill('SIGTERM');
    const [code, signal] = await exited;
    assert.equal(code, 0, `exit code ${code} signal ${signal}`);
  }
  started.delete(p.proc);
  assert.equal(p.stdout, `issuer=${p.issuer}\n`);
}

let shared; // the in-memory provider most tests use
let issuer;

before(async () => {
  shared = await startProvider();
  issuer = shared.issuer;
});

after(async () => {
  await stopProvider(shared);
  for (const proc of started) proc.kill('SIGKILL');
});

// ---------------------------------------------------------------- helpers

const b64url = (buf) => Buffer.from(buf).toString('base64url');

function pkce() {
  const verifier = b64url(crypto.randomBytes(32));
  const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
  return { verifier, challenge };
}

async function get(url, init = {}) {
  return fetch(url, { redirect: 'manual', ...init });
}

async function postForm(url, fields, headers = {}) {
  return fetch(url, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(fields).toString(),
  });
}

function location(res, at = issuer) {
  assert.equal(res.status, 303, `expected 303, got ${res.status}`);
  return new URL(res.headers.get('location'), at);
}

// The headless login protocol documented in README.md, at the provider `at`. Returns the final
// callback URL.
async function signIn({
  login = 'user_demo', deny = false, redirectUri = APP_REDIRECT, scope = 'openid profile email offline_access',
  at = issuer,
} = {}) {
  const { verifier, challenge } = pkce();
  const state = b64url(crypto.randomBytes(12));
  const nonce = b64url(crypto.randomBytes(12));
  const auth = new URL('/oauth/authorize', at);
  auth.search = new URLSearchParams({
    client_id: CLIENT_ID,
    response_type: 'code',
    redirect_uri: redirectUri,
    scope,
    state,
    nonce,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  });
  // 1. authorize -> 303 /interaction/:uid
  const interaction = location(await get(auth), at);
  const uid = /^\/interaction\/([\w-]+)$/.exec(interaction.pathname)?.[1];
  assert.ok(uid, `unexpected interaction url ${interaction}`);
  // 2. POST login (or abort) -> 303 /oauth/authorize/:uid
  const resume = location(await postForm(
    new URL(`/interaction/${uid}/${deny ? 'abort' : 'login'}`, at),
    deny ? {} : { login },
  ), at);
  assert.equal(resume.pathname, `/oauth/authorize/${uid}`);
  // 3. GET resume -> 303 redirect_uri?code=...&state=...
  const callback = location(await get(resume), at);
  assert.ok(callback.href.startsWith(`${redirectUri}?`), `callback ${callback.href}`);
  assert.equal(callback.searchParams.get('state'), state);
  return {
    callback, verifier, nonce, redirectUri, at,
  };
}

async function token(fields, at = issuer) {
  const res = await postForm(new URL('/oauth/token', at), { client_id: CLIENT_ID, ...fields });
  return { status: res.status, body: await res.json() };
}

async function exchange({
  callback, verifier, redirectUri, at,
}) {
  return token({
    grant_type: 'authorization_code',
    code: callback.searchParams.get('code'),
    code_verifier: verifier,
    redirect_uri: redirectUri,
  }, at);
}

// Against the JWKS the provider `at` publishes now (no cache: a restart must keep the keys).
async function verifyJwt(jwt, at = issuer) {
  const jwks = await (await get(new URL('/.well-known/jwks.json', at))).json();
  const [h, p, s] = jwt.split('.');
  const header = JSON.parse(Buffer.from(h, 'base64url'));
  const payload = JSON.parse(Buffer.from(p, 'base64url'));
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  assert.ok(jwk, `kid ${header.kid} not in JWKS`);
  assert.equal(jwk.d, undefined, 'JWKS must not publish private parts');
  const key = await crypto.webcrypto.subtle.importKey(
    'jwk',
    jwk,
    { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
    false,
    ['verify'],
  );
  const ok = await crypto.webcrypto.subtle.verify(
    'RSASSA-PKCS1-v1_5',
    key,
    Buffer.from(s, 'base64url'),
    Buffer.from(`${h}.${p}`),
  );
  assert.ok(ok, 'signature does not verify');
  return { header, payload };
}

function assertAccessToken({ header, payload }, sub, at = issuer) {
  const now = Math.floor(Date.now() / 1000);
  assert.equal(header.typ, 'at+jwt');
  assert.equal(header.alg, 'RS256');
  assert.equal(payload.iss, at);
  assert.equal(payload.sub, sub);
  assert.equal(payload.client_id, CLIENT_ID);
  assert.equal(payload.aud, RESOURCE);
  for (const s of ['openid', 'profile', 'email']) assert.ok(payload.scope.split(' ').includes(s), payload.scope);
  assert.ok(Math.abs(payload.iat - now) <= 5, `iat ${payload.iat}`);
  assert.equal(payload.exp - payload.iat, ACCESS_TTL);
}

// ---------------------------------------------------------------- tests

describe('oidc stand-in', () => {
  test('discovery advertises Clerk paths', async () => {
    const res = await get(new URL('/.well-known/openid-configuration', issuer));
    assert.equal(res.status, 200);
    const d = await res.json();
    assert.equal(d.issuer, issuer);
    assert.equal(d.authorization_endpoint, `${issuer}/oauth/authorize`);
    assert.equal(d.token_endpoint, `${issuer}/oauth/token`);
    assert.equal(d.userinfo_endpoint, `${issuer}/oauth/userinfo`);
    assert.equal(d.revocation_endpoint, `${issuer}/oauth/token/revoke`);
    assert.equal(d.jwks_uri, `${issuer}/.well-known/jwks.json`);
    assert.deepEqual(d.code_challenge_methods_supported, ['S256']);
    assert.deepEqual(d.response_types_supported, ['code']);
    for (const s of ['openid', 'profile', 'email', 'offline_access']) assert.ok(d.scopes_supported.includes(s));
  });

  test('human login page lists demo users and a cancel button', async () => {
    const { challenge } = pkce();
    const auth = new URL('/oauth/authorize', issuer);
    auth.search = new URLSearchParams({
      client_id: CLIENT_ID, response_type: 'code', redirect_uri: APP_REDIRECT, scope: 'openid', state: 's',
      code_challenge: challenge, code_challenge_method: 'S256',
    });
    const res = await get(location(await get(auth)));
    assert.equal(res.status, 200);
    const html = await res.text();
    assert.match(html, /Ada Lovelace/);
    assert.match(html, /Grace Hopper/);
    assert.match(html, /name="login"/);
    assert.match(html, /\/abort"/);
  });

  test('code flow with PKCE: id_token, JWT access token, refresh token, userinfo, rotation', async () => {
    const signedIn = await signIn({ login: 'user_demo' });
    assert.equal(signedIn.callback.protocol, 'app.confab.desktop:');
    const { status, body } = await exchange(signedIn);
    assert.equal(status, 200, JSON.stringify(body));
    assert.equal(body.token_type, 'Bearer');
    assert.equal(body.expires_in, ACCESS_TTL);
    assert.ok(body.refresh_token, 'refresh token issued');

    const id = await verifyJwt(body.id_token);
    assert.equal(id.header.alg, 'RS256');
    assert.equal(id.payload.iss, issuer);
    assert.equal(id.payload.aud, CLIENT_ID);
    assert.equal(id.payload.sub, 'user_demo');
    assert.equal(id.payload.nonce, signedIn.nonce);
    assert.equal(id.payload.email, 'ada@example.com');

    assertAccessToken(await verifyJwt(body.access_token), 'user_demo');

    const info = await get(new URL('/oauth/userinfo', issuer), {
      headers: { authorization: `Bearer ${body.access_token}` },
    });
    assert.equal(info.status, 200);
    const claims = await info.json();
    assert.equal(claims.sub, 'user_demo');
    assert.equal(claims.email, 'ada@example.com');
    assert.equal(claims.email_verified, true);
    assert.equal(claims.name, 'Ada Lovelace');

    const bad = await get(new URL('/oauth/userinfo', issuer), {
      headers: { authorization: `Bearer ${body.access_token.slice(0, -4)}AAAA` },
    });
    assert.equal(bad.status, 401);

    const refreshed = await token({ grant_type: 'refresh_token', refresh_token: body.refresh_token });
    assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
    assert.ok(refreshed.body.refresh_token);
    assert.notEqual(refreshed.body.refresh_token, body.refresh_token, 'refresh token rotates');
    assertAccessToken(await verifyJwt(refreshed.body.access_token), 'user_demo');

    const reused = await token({ grant_type: 'refresh_token', refresh_token: body.refresh_token });
    assert.equal(reused.status, 400);
    assert.equal(reused.body.error, 'invalid_grant');
  });

  test('wrong code_verifier fails, reused code fails', async () => {
    const signedIn = await signIn({ login: 'user_second' });
    const wrong = await exchange({ ...signedIn, verifier: pkce().verifier });
    assert.equal(wrong.status, 400);
    assert.equal(wrong.body.error, 'invalid_grant');

    const ok = await exchange(signedIn);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assertAccessToken(await verifyJwt(ok.body.access_token), 'user_second');

    const again = await exchange(signedIn);
    assert.equal(again.status, 400);
    assert.equal(again.body.error, 'invalid_grant');

    // The real reasons are logged server-side.
    await new Promise((r) => setTimeout(r, 50));
    assert.match(shared.stderr, /grant\.error: .*code_verifier does not match code_challenge/);
    assert.match(shared.stderr, /grant\.error: .*already consumed/);
  });

  test('cancel ends with error=access_denied', async () => {
    const { callback } = await signIn({ deny: true });
    assert.equal(callback.searchParams.get('error'), 'access_denied');
    assert.equal(callback.searchParams.get('code'), null);
  });

  test('revoking the refresh token makes the next refresh fail', async () => {
    const { body } = await exchange(await signIn({ login: 'user_demo' }));
    const revoke = await postForm(new URL('/oauth/token/revoke', issuer), {
      client_id: CLIENT_ID, token: body.refresh_token, token_type_hint: 'refresh_token',
    });
    assert.equal(revoke.status, 200);
    const after = await token({ grant_type: 'refresh_token', refresh_token: body.refresh_token });
    assert.equal(after.status, 400);
    assert.equal(after.body.error, 'invalid_grant');
  });

  test('loopback redirect on any port, and unknown user ids are created on the fly', async () => {
    const redirectUri = 'http://127.0.0.1:49152/callback';
    const signedIn = await signIn({ login: 'user_2xTestAbc', redirectUri });
    assert.equal(signedIn.callback.origin, 'http://127.0.0.1:49152');
    const { status, body } = await exchange(signedIn);
    assert.equal(status, 200, JSON.stringify(body));
    assertAccessToken(await verifyJwt(body.access_token), 'user_2xTestAbc');
  });

  test('PKCE is required', async () => {
    const auth = new URL('/oauth/authorize', issuer);
    auth.search = new URLSearchParams({
      client_id: CLIENT_ID, response_type: 'code', redirect_uri: APP_REDIRECT, scope: 'openid', state: 'x',
    });
    const cb = location(await get(auth));
    assert.equal(cb.protocol, 'app.confab.desktop:');
    assert.equal(cb.searchParams.get('error'), 'invalid_request');
  });
});

describe('opaque access tokens and the Clerk Backend API stand-in', () => {
  const SECRET = 'sk_test_flow';
  let opaque;

  before(async () => {
    opaque = await startProvider({
      env: { OIDC_ACCESS_TOKEN_FORMAT: 'opaque', OIDC_CLERK_SECRET_KEY: SECRET },
    });
  });
  after(async () => stopProvider(opaque));

  const verify = (accessToken, key = SECRET) => fetch(
    new URL('/v1/oauth_applications/access_tokens/verify', opaque.issuer),
    {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ access_token: accessToken }),
    },
  );

  test('an opaque token is described as Clerk does, with the secret key only', async () => {
    const { status, body } = await exchange(await signIn({ login: 'user_demo', at: opaque.issuer }));
    assert.equal(status, 200);
    assert.equal(body.access_token.split('.').length, 1, 'not a JWT');
    const res = await verify(body.access_token);
    assert.equal(res.status, 200);
    const described = await res.json();
    assert.equal(described.object, 'clerk_idp_oauth_access_token');
    assert.equal(described.client_id, CLIENT_ID);
    assert.equal(described.subject, 'user_demo');
    assert.equal(described.revoked, false);
    assert.equal(described.expired, false);
    const now = Math.floor(Date.now() / 1000);
    assert.ok(Math.abs(described.expiration - (now + ACCESS_TTL)) <= 5, `expiration ${described.expiration}`);
    assert.ok(described.scopes.includes('openid'));

    const wrongKey = await verify(body.access_token, 'sk_test_other');
    assert.equal(wrongKey.status, 401);
    assert.equal((await wrongKey.json()).errors[0].code, 'authentication_invalid');
    assert.equal((await verify('oat_unknown')).status, 404);

    const user = await fetch(new URL('/v1/users/user_demo', opaque.issuer), {
      headers: { authorization: `Bearer ${SECRET}` },
    });
    assert.equal(user.status, 200);
    const u = await user.json();
    assert.equal(u.id, 'user_demo');
    assert.equal(u.email_addresses[0].id, u.primary_email_address_id);
    assert.equal(u.email_addresses[0].email_address, 'ada@example.com');
  });

  test('a revoked token is described as revoked; failures can be set and counted', async () => {
    const { body } = await exchange(await signIn({ login: 'user_second', at: opaque.issuer }));
    const revoke = await postForm(new URL('/oauth/token/revoke', opaque.issuer), {
      client_id: CLIENT_ID, token: body.access_token, token_type_hint: 'access_token',
    });
    assert.equal(revoke.status, 200);
    const described = await (await verify(body.access_token)).json();
    assert.equal(described.revoked, true);
    assert.equal(described.subject, 'user_second');

    const before = (await (await fetch(new URL('/standin/clerk', opaque.issuer))).json()).verifyCalls;
    const set = (failure) => fetch(new URL('/standin/clerk', opaque.issuer), {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(failure),
    });
    assert.equal((await set({ status: 429, retryAfter: 7 })).status, 204);
    const limited = await verify(body.access_token);
    assert.equal(limited.status, 429);
    assert.equal(limited.headers.get('retry-after'), '7');
    await set({});
    assert.equal((await verify(body.access_token)).status, 200);
    const calls = (await (await fetch(new URL('/standin/clerk', opaque.issuer))).json()).verifyCalls;
    assert.equal(calls - before, 2);
  });
});

describe('OIDC_STATE_FILE: state across restarts', () => {
  let dir;
  before(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'oidc-state-')); });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  // Both files: the state file keeps the grants, the JWKS file the keys that signed the tokens.
  const filesFor = (name) => ({
    OIDC_STATE_FILE: path.join(dir, `${name}.json`),
    OIDC_JWKS_FILE: path.join(dir, `${name}-jwks.json`),
  });

  async function restart(p, env) {
    await stopProvider(p);
    const again = await startProvider({ port: new URL(p.issuer).port, env });
    assert.equal(again.issuer, p.issuer);
    return again;
  }

  const refresh = (refreshToken, at) => token({ grant_type: 'refresh_token', refresh_token: refreshToken }, at);

  test('a refresh token from before a restart yields a new access token after it', async () => {
    const env = filesFor('restart');
    const first = await startProvider({ env });
    const { status, body } = await exchange(await signIn({ at: first.issuer }));
    assert.equal(status, 200, JSON.stringify(body));

    const second = await restart(first, env);
    // Same issuer and keys: the tokens issued before the restart still verify.
    assertAccessToken(await verifyJwt(body.access_token, second.issuer), 'user_demo', second.issuer);
    assert.equal((await verifyJwt(body.id_token, second.issuer)).payload.sub, 'user_demo');
    const refreshed = await refresh(body.refresh_token, second.issuer);
    assert.equal(refreshed.status, 200, `${JSON.stringify(refreshed.body)}\n${second.stderr}`);
    assert.notEqual(refreshed.body.access_token, body.access_token);
    assertAccessToken(await verifyJwt(refreshed.body.access_token, second.issuer), 'user_demo', second.issuer);

    // The rotation survives the next restart: the new token refreshes, the used one is refused.
    const third = await restart(second, env);
    const next = await refresh(refreshed.body.refresh_token, third.issuer);
    assert.equal(next.status, 200, `${JSON.stringify(next.body)}\n${third.stderr}`);
    const reused = await refresh(body.refresh_token, third.issuer);
    assert.equal(reused.status, 400);
    assert.equal(reused.body.error, 'invalid_grant');
    await stopProvider(third);
  });

  test('a revoked refresh token stays revoked after a restart', async () => {
    const env = filesFor('revoke');
    const first = await startProvider({ env });
    const revoked = (await exchange(await signIn({ at: first.issuer }))).body;
    const kept = (await exchange(await signIn({ login: 'user_second', at: first.issuer }))).body;
    const revoke = await postForm(new URL('/oauth/token/revoke', first.issuer), {
      client_id: CLIENT_ID, token: revoked.refresh_token, token_type_hint: 'refresh_token',
    });
    assert.equal(revoke.status, 200);

    const second = await restart(first, env);
    const refused = await refresh(revoked.refresh_token, second.issuer);
    assert.equal(refused.status, 400);
    assert.equal(refused.body.error, 'invalid_grant');
    // The other grant survived the same restart: the refusal is the revocation's, not lost state.
    const other = await refresh(kept.refresh_token, second.issuer);
    assert.equal(other.status, 200, `${JSON.stringify(other.body)}\n${second.stderr}`);
    await stopProvider(second);
  });

  test('expired entries leave the state file', async () => {
    const env = { ...filesFor('expiry'), OIDC_CODE_TTL: '1' };
    const p = await startProvider({ env });
    const keys = () => Object.keys(JSON.parse(fs.readFileSync(env.OIDC_STATE_FILE, 'utf8')));
    const { callback } = await signIn({ at: p.issuer });
    const code = `AuthorizationCode:${callback.searchParams.get('code')}`;
    assert.ok(keys().includes(code), keys().join(' '));

    await new Promise((r) => setTimeout(r, 1200));
    await signIn({ at: p.issuer }); // any change rewrites the file
    assert.ok(!keys().includes(code), keys().join(' '));
    await stopProvider(p);
  });

  test('a corrupt state file stops the start, naming the file, and is left as it was', async () => {
    for (const [name, text] of [['truncated', '{"RefreshToken:abc": {"payload": {'], ['list', '[1, 2]']]) {
      const env = filesFor(name);
      fs.writeFileSync(env.OIDC_STATE_FILE, text);
      await assert.rejects(startProvider({ env }), (err) => {
        assert.match(err.message, /^provider exited 2;/);
        assert.ok(err.message.includes(`OIDC_STATE_FILE ${env.OIDC_STATE_FILE}: not `), err.message);
        return true;
      });
      assert.equal(fs.readFileSync(env.OIDC_STATE_FILE, 'utf8'), text);
    }
  });
});
