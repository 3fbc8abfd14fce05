// Local OpenID provider standing in for Clerk's Frontend API (tests and the local dev stack).
// See README.md in this folder for the protocol. stdout carries exactly one line,
// `issuer=http://127.0.0.1:PORT`, once listening; everything else goes to stderr.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

import Provider from 'oidc-provider';

// oidc-provider prints notices with console.info (stdout), from the Provider
// it builds below. Keep stdout for the issuer line only.
for (const level of ['log', 'info', 'debug']) {
  console[level] = (...args) => console.error(...args);
}

// ---------------------------------------------------------------- configuration

function argValue(name) {
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === name) return argv[i + 1];
    if (argv[i].startsWith(`${name}=`)) return argv[i].slice(name.length + 1);
  }
  return undefined;
}

function positiveInt(raw, name, fallback) {
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) {
    console.error(`invalid ${name}: ${raw}`);
    process.exit(2);
  }
  return n;
}

const HOST = '127.0.0.1';
const PORT = positiveInt(argValue('--port') ?? process.env.OIDC_PORT, 'port', 0);
const CLIENT_ID = process.env.OIDC_CLIENT_ID || 'confab-desktop';
const REDIRECT_URIS = [
  'app.confab.desktop://oauth/callback',
  ...(process.env.OIDC_EXTRA_REDIRECTS || '').split(',').map((s) => s.trim()).filter(Boolean),
];
const RESOURCE = process.env.OIDC_RESOURCE || 'http://127.0.0.1:8787';
const ACCESS_TTL = positiveInt(process.env.OIDC_ACCESS_TTL, 'OIDC_ACCESS_TTL', 300) || 300;
const REFRESH_TTL = positiveInt(process.env.OIDC_REFRESH_TTL, 'OIDC_REFRESH_TTL', 14 * 24 * 3600) || 14 * 24 * 3600;
const CODE_TTL = positiveInt(process.env.OIDC_CODE_TTL, 'OIDC_CODE_TTL', 60) || 60;
const JWKS_FILE = process.env.OIDC_JWKS_FILE || '';
const STATE_FILE = process.env.OIDC_STATE_FILE || '';
// `opaque`: access tokens are random strings verified through the Clerk Backend API stand-in
// below (as Clerk's OAuth applications without JWT access tokens); `jwt` (default): signed JWTs.
const ACCESS_FORMAT = process.env.OIDC_ACCESS_TOKEN_FORMAT || 'jwt';
if (!['jwt', 'opaque'].includes(ACCESS_FORMAT)) {
  console.error(`invalid OIDC_ACCESS_TOKEN_FORMAT: ${ACCESS_FORMAT} (jwt or opaque)`);
  process.exit(2);
}
// The secret key the Backend API stand-in expects (`Authorization: Bearer …`), as Clerk's.
const SECRET_KEY = process.env.OIDC_CLERK_SECRET_KEY || 'sk_test_confab_stand_in';
const SCOPES = ['openid', 'profile', 'email', 'offline_access'];

// ---------------------------------------------------------------- signing keys

function generateSigningKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  const kid = crypto.createHash('sha256')
    .update(JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n }))
    .digest('base64url');
  return { ...jwk, kid, alg: 'RS256', use: 'sig' };
}

function loadKeys() {
  if (!JWKS_FILE) return { keys: [generateSigningKey()] };
  if (fs.existsSync(JWKS_FILE)) {
    const jwks = JSON.parse(fs.readFileSync(JWKS_FILE, 'utf8'));
    if (!Array.isArray(jwks.keys) || jwks.keys.length === 0 || !jwks.keys[0].d) {
      throw new Error(`${JWKS_FILE}: expected a JWK set with at least one private RSA key`);
    }
    return jwks;
  }
  const jwks = { keys: [generateSigningKey()] };
  fs.writeFileSync(JWKS_FILE, `${JSON.stringify(jwks, null, 2)}\n`, { mode: 0o600 });
  console.error(`wrote a new signing key to ${JWKS_FILE}`);
  return jwks;
}

const JWKS = loadKeys();
const PUBLIC_KEYS = new Map(
  JWKS.keys.map((k) => [k.kid, crypto.createPublicKey({ key: k, format: 'jwk' })]),
);

// ---------------------------------------------------------------- state

// Grants, sessions, interactions, codes and tokens stay in oidc-provider's in-memory adapter
// unless OIDC_STATE_FILE names a JSON file to keep them in across restarts. The file maps
// `Model:id` to `{ payload, expiresAt }` (epoch milliseconds, null: no expiry).

// The models oidc-provider revokes together by grant (as its memory adapter does).
const GRANT_MEMBERS = new Set([
  'AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode',
  'BackchannelAuthenticationRequest', 'PreAuthorizedCode',
]);

function stateFileError(why) {
  console.error(`OIDC_STATE_FILE ${STATE_FILE}: ${why}`);
  process.exit(2);
}

const live = (entry) => entry.expiresAt === null || entry.expiresAt > Date.now();

function loadState() {
  let text;
  try {
    text = fs.readFileSync(STATE_FILE, 'utf8');
  } catch (err) {
    if (err.code === 'ENOENT') return new Map();
    return stateFileError(`cannot read it (${err.message})`);
  }
  let entries;
  try {
    entries = JSON.parse(text);
  } catch (err) {
    return stateFileError(`not valid JSON (${err.message}); fix or delete it`);
  }
  const valid = (e) => typeof e?.payload === 'object' && e.payload !== null
    && (e.expiresAt === null || Number.isFinite(e.expiresAt));
  if (typeof entries !== 'object' || entries === null || Array.isArray(entries)
    || !Object.values(entries).every(valid)) {
    return stateFileError('not a state file (expected {"Model:id": {payload, expiresAt}}); fix or delete it');
  }
  return new Map(Object.entries(entries));
}

const STATE = STATE_FILE ? loadState() : undefined;

// The whole file after each change, through a rename so that a crash leaves the old or the new one.
function saveState() {
  for (const [key, entry] of STATE) if (!live(entry)) STATE.delete(key);
  const tmp = `${STATE_FILE}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(Object.fromEntries(STATE), null, 2)}\n`, { mode: 0o600 });
  fs.renameSync(tmp, STATE_FILE);
}

class FileAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  // Copies in and out, like a database: changing a payload found must not change the store.
  async find(id) {
    const entry = STATE.get(this.key(id));
    return entry && live(entry) ? structuredClone(entry.payload) : undefined;
  }

  async findByUid(uid) {
    return this.#findBy('uid', uid);
  }

  async findByUserCode(userCode) {
    return this.#findBy('userCode', userCode);
  }

  #findBy(field, value) {
    for (const [key, entry] of STATE) {
      if (key.startsWith(`${this.model}:`) && entry.payload[field] === value && live(entry)) {
        return structuredClone(entry.payload);
      }
    }
    return undefined;
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : null;
    STATE.set(this.key(id), { payload: structuredClone(payload), expiresAt });
    saveState();
  }

  async consume(id) {
    const entry = STATE.get(this.key(id));
    if (!entry) return;
    entry.payload.consumed = Math.floor(Date.now() / 1000);
    saveState();
  }

  async destroy(id) {
    if (STATE.delete(this.key(id))) saveState();
  }

  async revokeByGrantId(grantId) {
    let revoked = false;
    for (const [key, entry] of STATE) {
      if (GRANT_MEMBERS.has(key.slice(0, key.indexOf(':'))) && entry.payload.grantId === grantId) {
        STATE.delete(key);
        revoked = true;
      }
    }
    if (revoked) saveState();
  }
}

if (STATE) {
  // Now rather than on the first sign-in: creates a missing file, drops what expired while the
  // provider was down, and finds an unwritable folder before the issuer line.
  try {
    saveState();
  } catch (err) {
    stateFileError(`cannot write it (${err.message})`);
  }
  if (!JWKS_FILE) {
    console.error('OIDC_STATE_FILE without OIDC_JWKS_FILE: a restart keeps grants and refresh tokens,'
      + ' but access and ID tokens issued before it no longer verify (new signing key)');
  }
}

// ---------------------------------------------------------------- accounts

function avatar(initials, colour) {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64" rx="32" fill="${colour}"/><text x="32" y="41" font-family="sans-serif" font-size="24" fill="#fff" text-anchor="middle">${initials}</text></svg>`;
  return `data:image/svg+xml;base64,${Buffer.from(svg).toString('base64')}`;
}

const DIRECTORY = new Map([
  ['user_demo', {
    given_name: 'Ada', family_name: 'Lovelace', email: 'ada@example.com', colour: '#6d28d9',
  }],
  ['user_second', {
    given_name: 'Grace', family_name: 'Hopper', email: 'grace@example.com', colour: '#047857',
  }],
].map(([sub, p]) => [sub, {
  sub,
  email: p.email,
  email_verified: true,
  given_name: p.given_name,
  family_name: p.family_name,
  name: `${p.given_name} ${p.family_name}`,
  picture: avatar(p.given_name[0] + p.family_name[0], p.colour),
}]));

const LOGIN_NAME = /^[A-Za-z0-9_.@+-]{1,128}$/;

// A login name is a user id (`user_demo`, or any new name, created on the fly) or a known email.
function resolveLogin(raw) {
  const login = String(raw ?? '').trim();
  if (!LOGIN_NAME.test(login)) return undefined;
  for (const profile of DIRECTORY.values()) {
    if (profile.email.toLowerCase() === login.toLowerCase()) return profile;
  }
  if (!DIRECTORY.has(login)) {
    const local = login.includes('@') ? login.split('@')[0] : login;
    DIRECTORY.set(login, {
      sub: login,
      email: login.includes('@') ? login : `${login}@example.com`,
      email_verified: true,
      given_name: local,
      family_name: '',
      name: local,
      picture: '',
    });
    console.error(`created account ${login}`);
  }
  return DIRECTORY.get(login);
}

function claimsFor(profile, scopes) {
  const out = { sub: profile.sub };
  if (scopes.has('profile')) {
    for (const k of ['name', 'given_name', 'family_name', 'picture']) out[k] = profile[k];
  }
  if (scopes.has('email')) {
    out.email = profile.email;
    out.email_verified = profile.email_verified;
  }
  return out;
}

async function findAccount(_ctx, sub) {
  const profile = resolveLogin(sub);
  if (!profile || profile.sub !== sub) return undefined;
  return {
    accountId: sub,
    // oidc-provider filters these by the granted scopes / claims.
    async claims() {
      return { ...profile };
    },
  };
}

// ---------------------------------------------------------------- provider

const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(PORT, HOST, resolve);
});
const ISSUER = `http://${HOST}:${server.address().port}`;
console.error(`provider: listening at ${ISSUER}`);

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));

const STYLE = `
  :root { color-scheme: light dark; font-family: system-ui, sans-serif; }
  body { display: grid; place-items: center; min-height: 100vh; margin: 0; background: Canvas; color: CanvasText; }
  main { width: min(24rem, 92vw); padding: 1.5rem; border: 1px solid #8884; border-radius: .75rem; }
  h1 { font-size: 1.2rem; margin: 0 0 .25rem; }
  p { margin: .25rem 0 1rem; opacity: .75; }
  form { margin: 0; }
  .user { display: flex; gap: .75rem; align-items: center; width: 100%; margin: .35rem 0; padding: .6rem .75rem;
          border: 1px solid #8885; border-radius: .5rem; background: transparent; color: inherit; font: inherit; cursor: pointer; text-align: left; }
  .user:hover, .user:focus-visible { border-color: #6d28d9; }
  .user img { width: 2rem; height: 2rem; border-radius: 50%; }
  .user small { display: block; opacity: .7; }
  .row { display: flex; gap: .5rem; margin-top: 1rem; }
  input { flex: 1; padding: .5rem; font: inherit; border: 1px solid #8887; border-radius: .4rem; background: Field; color: FieldText; }
  button.primary, button.deny { padding: .5rem .9rem; font: inherit; border-radius: .4rem; cursor: pointer; }
  button.primary { background: #6d28d9; color: #fff; border: 0; }
  button.deny { width: 100%; margin-top: 1rem; background: transparent; color: inherit; border: 1px solid #8887; }
`;

function page(title, body) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>${escapeHtml(title)}</title>
<style>${STYLE}</style></head><body><main>${body}</main></body></html>`;
}

function loginPage(uid, clientId) {
  const users = [...DIRECTORY.values()].filter((u) => u.picture).map((u) => `
    <form method="post" action="/interaction/${uid}/login">
      <input type="hidden" name="login" value="${escapeHtml(u.sub)}">
      <button class="user" type="submit"><img src="${u.picture}" alt="">
        <span>${escapeHtml(u.name)}<small>${escapeHtml(u.email)} · ${escapeHtml(u.sub)}</small></span></button>
    </form>`).join('');
  return page('Sign in', `
    <h1>Sign in to Confab</h1>
    <p>Local test identity provider · client <code>${escapeHtml(clientId)}</code></p>
    ${users}
    <form method="post" action="/interaction/${uid}/login" class="row">
      <input id="login" name="login" aria-label="User id or email" placeholder="user_… or email" required pattern="[A-Za-z0-9_.@+\\-]{1,128}" autocomplete="username">
      <button class="primary" type="submit">Continue</button>
    </form>
    <form method="post" action="/interaction/${uid}/abort">
      <button class="deny" type="submit">Cancel</button>
    </form>`);
}

const provider = new Provider(ISSUER, {
  clients: [{
    client_id: CLIENT_ID,
    client_name: 'Confab desktop',
    application_type: 'native',
    token_endpoint_auth_method: 'none',
    redirect_uris: REDIRECT_URIS,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    scope: SCOPES.join(' '),
    id_token_signed_response_alg: 'RS256',
  }],
  jwks: JWKS,
  ...(STATE && { adapter: FileAdapter }),
  findAccount,
  scopes: SCOPES,
  responseTypes: ['code'],
  clientAuthMethods: ['none', 'client_secret_basic', 'client_secret_post'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'given_name', 'family_name', 'picture'],
    email: ['email', 'email_verified'],
  },
  // ID tokens carry the profile/email claims too (Clerk's do); the desktop shows them without userinfo.
  conformIdTokenClaims: false,
  routes: {
    authorization: '/oauth/authorize',
    token: '/oauth/token',
    userinfo: '/oauth/userinfo',
    revocation: '/oauth/token/revoke',
    jwks: '/.well-known/jwks.json',
  },
  pkce: { required: () => true }, // S256 is the only method oidc-provider 9 accepts
  enabledJWA: {
    idTokenSigningAlgValues: ['RS256'],
    userinfoSigningAlgValues: ['RS256'],
  },
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: { enabled: false },
    revocation: { enabled: true },
    userinfo: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // No `resource` parameter: the proxy is the audience (its tokens' format: OIDC_ACCESS_TOKEN_FORMAT).
      defaultResource: (_ctx, _client, oneOf) => oneOf ?? RESOURCE,
      // Keep the resource (JWT format) at the token endpoint even though `openid` was requested.
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resourceIndicator) => {
        if (resourceIndicator !== RESOURCE) {
          throw new Provider.errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
        }
        return {
          scope: SCOPES.join(' '),
          audience: RESOURCE,
          accessTokenFormat: ACCESS_FORMAT,
          accessTokenTTL: ACCESS_TTL,
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  // First-party client: consent is implied. Create or widen the grant to cover what is requested.
  async loadExistingGrant(ctx) {
    const { oidc } = ctx;
    const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
    let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
    if (oidc.client.clientId !== CLIENT_ID) return grant;
    grant ||= new oidc.provider.Grant({ accountId: oidc.account.accountId, clientId: oidc.client.clientId });
    const wanted = [...oidc.requestParamScopes].filter((s) => SCOPES.includes(s));
    grant.addOIDCScope(wanted.join(' '));
    if (oidc.requestParamClaims?.size) grant.addOIDCClaims([...oidc.requestParamClaims]);
    for (const resource of Object.keys(oidc.resourceServers ?? {})) {
      grant.addResourceScope(resource, wanted.join(' '));
    }
    await grant.save();
    return grant;
  },
  issueRefreshToken: (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => true,
  expiresWithSession: () => false,
  clientBasedCORS: () => true,
  ttl: {
    AccessToken: ACCESS_TTL,
    AuthorizationCode: CODE_TTL,
    IdToken: 3600,
    RefreshToken: REFRESH_TTL,
    Interaction: 600,
    Session: 14 * 24 * 3600,
    Grant: 14 * 24 * 3600,
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Error', `<h1>${escapeHtml(out.error)}</h1><p>${escapeHtml(out.error_description ?? '')}</p>`);
  },
});

// ---------------------------------------------------------------- logging

for (const event of [
  'grant.error', 'authorization.error', 'revocation.error', 'userinfo.error', 'jwks.error',
  'discovery.error', 'introspection.error', 'server_error',
]) {
  provider.on(event, (ctx, err) => {
    const detail = err.error_detail ?? err.cause?.message;
    console.error(
      `${event}: ${ctx?.method ?? ''} ${ctx?.path ?? ''} ${err.error ?? err.name}: ${err.error_description ?? err.message}`
      + `${detail ? ` (${detail})` : ''}`,
    );
    if (event === 'server_error') console.error(err.stack);
  });
}

provider.on('interaction.started', (_ctx, prompt) => {
  console.error(`interaction: ${prompt.name} (${prompt.reasons.join(', ')}) ${JSON.stringify(prompt.details)}`);
});

// ---------------------------------------------------------------- Clerk Backend API

// The two routes of Clerk's Backend API the proxy calls with CLERK_SECRET_KEY, under `/v1` of
// this issuer (the proxy's CLERK_API_URL): token verification for opaque access tokens, and users.
// Shapes as Clerk documents them; the secret key is checked as Clerk does.

const backend = {
  verifyCalls: 0,
  // Set through POST /standin/clerk: every verification answers this status (an outage, 429).
  failWith: undefined,
  retryAfter: undefined,
  // Access tokens revoked at /oauth/token/revoke: Clerk still describes them, as revoked.
  revoked: new Map(),
};

provider.on('access_token.destroyed', (token) => {
  backend.revoked.set(token.jti, {
    jti: token.jti, clientId: token.clientId, accountId: token.accountId,
    scope: token.scope, iat: token.iat, exp: token.exp,
  });
});

function clerkError(ctx, status, code, message) {
  ctx.status = status;
  ctx.body = { errors: [{ code, message, long_message: message }], clerk_trace_id: crypto.randomUUID() };
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      body += chunk;
      if (body.length > 16384) reject(new Error('body too large'));
    });
    req.on('end', () => {
      try {
        resolve(JSON.parse(body || '{}'));
      } catch (err) {
        reject(err);
      }
    });
    req.on('error', reject);
  });
}

function describeToken(t, revoked) {
  const now = Math.floor(Date.now() / 1000);
  return {
    object: 'clerk_idp_oauth_access_token',
    id: `oat_${t.jti.slice(0, 24)}`,
    client_id: t.clientId,
    subject: t.accountId,
    scopes: String(t.scope ?? '').split(' ').filter(Boolean),
    revoked,
    revocation_reason: revoked ? 'revoked_by_user' : null,
    expired: typeof t.exp === 'number' && t.exp <= now,
    expiration: t.exp ?? null,
    created_at: t.iat ?? now,
    updated_at: now,
  };
}

async function clerkBackend(ctx, next) {
  const { path, method } = ctx;
  if (path === '/standin/clerk') {
    if (method === 'GET') {
      ctx.body = { verifyCalls: backend.verifyCalls };
      return undefined;
    }
    if (method === 'POST') {
      const body = await readJson(ctx.req);
      backend.failWith = Number.isInteger(body.status) ? body.status : undefined;
      backend.retryAfter = Number.isInteger(body.retryAfter) ? body.retryAfter : undefined;
      ctx.status = 204;
      return undefined;
    }
  }
  const users = /^\/v1\/users\/([^/]+)$/.exec(path);
  if (path !== '/v1/oauth_applications/access_tokens/verify' && !users) return next();

  ctx.set('Cache-Control', 'no-store');
  if (ctx.get('authorization') !== `Bearer ${SECRET_KEY}`) {
    console.error(`clerk backend: ${method} ${path}: wrong secret key`);
    return clerkError(ctx, 401, 'authentication_invalid', 'The provided secret key is invalid.');
  }

  if (users && method === 'GET') {
    const profile = DIRECTORY.get(decodeURIComponent(users[1]));
    if (!profile) return clerkError(ctx, 404, 'resource_not_found', 'User not found.');
    const emailId = `idn_${crypto.createHash('sha256').update(profile.email).digest('hex').slice(0, 24)}`;
    ctx.body = {
      object: 'user',
      id: profile.sub,
      first_name: profile.given_name || null,
      last_name: profile.family_name || null,
      image_url: profile.picture || null,
      primary_email_address_id: emailId,
      email_addresses: [{ object: 'email_address', id: emailId, email_address: profile.email }],
    };
    return undefined;
  }

  if (method !== 'POST') return clerkError(ctx, 405, 'method_not_allowed', 'Use POST.');
  backend.verifyCalls += 1;
  if (backend.failWith) {
    if (backend.retryAfter !== undefined) ctx.set('Retry-After', String(backend.retryAfter));
    return clerkError(ctx, backend.failWith, 'stand_in_failure', 'Failure set through /standin/clerk.');
  }
  let body;
  try {
    body = await readJson(ctx.req);
  } catch {
    return clerkError(ctx, 400, 'form_param_format_invalid', 'The body is not JSON.');
  }
  if (typeof body.access_token !== 'string' || !body.access_token) {
    return clerkError(ctx, 422, 'form_param_missing', 'access_token must be included.');
  }
  const token = await provider.AccessToken.find(body.access_token, { ignoreExpiration: true });
  if (token) {
    ctx.body = describeToken(token, false);
    return undefined;
  }
  const revoked = backend.revoked.get(body.access_token);
  if (revoked) {
    ctx.body = describeToken(revoked, true);
    return undefined;
  }
  return clerkError(ctx, 404, 'resource_not_found', 'Access token not found.');
}

provider.use(clerkBackend);

// ---------------------------------------------------------------- interactions and userinfo

function readForm(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      body += chunk;
      if (body.length > 16384) reject(new Error('form too large'));
    });
    req.on('end', () => resolve(new URLSearchParams(body)));
    req.on('error', reject);
  });
}

async function finishInteraction(ctx, interaction, result) {
  interaction.result = { ...interaction.lastSubmission, ...result };
  await interaction.save(interaction.exp - Math.floor(Date.now() / 1000));
  ctx.status = 303;
  ctx.redirect(interaction.returnTo);
}

// Consent is automatic for the first-party client: loadExistingGrant creates or widens the grant on
// resume. A consent result must still be present (native clients always get a consent prompt).
function consentResult(interaction) {
  return { consent: interaction.grantId ? { grantId: interaction.grantId } : {} };
}

function b64json(part) {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

// Clerk's userinfo accepts its JWT access tokens; oidc-provider refuses tokens with an audience at
// userinfo, so JWT access tokens are verified here.
async function jwtUserinfo(ctx, token) {
  const fail = (description) => {
    console.error(`userinfo.error: invalid_token (${description})`);
    ctx.status = 401;
    ctx.set('WWW-Authenticate', `Bearer error="invalid_token", error_description="${description}"`);
    ctx.body = { error: 'invalid_token', error_description: description };
  };
  const [h, p, s] = token.split('.');
  let header;
  let payload;
  try {
    header = b64json(h);
    payload = b64json(p);
  } catch {
    return fail('malformed token');
  }
  const key = PUBLIC_KEYS.get(header.kid);
  if (header.alg !== 'RS256' || header.typ !== 'at+jwt' || !key) return fail('unexpected header');
  if (!crypto.verify('sha256', Buffer.from(`${h}.${p}`), key, Buffer.from(s, 'base64url'))) {
    return fail('bad signature');
  }
  if (payload.iss !== ISSUER) return fail('wrong issuer');
  if (!(payload.exp > Math.floor(Date.now() / 1000))) return fail('token expired');
  const scopes = new Set(String(payload.scope ?? '').split(' '));
  if (!scopes.has('openid')) return fail('openid scope missing');
  const profile = resolveLogin(payload.sub);
  if (!profile || profile.sub !== payload.sub) return fail('unknown subject');
  ctx.set('Cache-Control', 'no-store');
  ctx.body = claimsFor(profile, scopes);
  return undefined;
}

provider.use(async (ctx, next) => {
  const { path, method } = ctx;

  if (path === '/oauth/userinfo' && (method === 'GET' || method === 'POST')) {
    const m = /^Bearer\s+([\w-]+\.[\w-]+\.[\w-]+)$/i.exec(ctx.get('authorization'));
    if (m) return jwtUserinfo(ctx, m[1]);
    return next();
  }

  // Resuming after an interaction needs the `_interaction_resume` cookie set by /oauth/authorize.
  // Browsers carry it; headless clients without a cookie jar get it from the path.
  const resume = /^\/oauth\/authorize\/([\w-]+)$/.exec(path);
  if (resume && method === 'GET' && !ctx.cookies.get('_interaction_resume')) {
    const cookie = ctx.get('cookie');
    ctx.request.headers.cookie = `${cookie ? `${cookie}; ` : ''}_interaction_resume=${resume[1]}`;
    return next();
  }

  const m = /^\/interaction\/([\w-]+)(?:\/(login|abort))?$/.exec(path);
  if (!m) return next();
  const [, uid, action] = m;
  ctx.set('Cache-Control', 'no-store');
  const interaction = await provider.Interaction.find(uid);
  if (!interaction) {
    ctx.status = 400;
    ctx.type = 'html';
    ctx.body = page('Expired', '<h1>Sign-in expired</h1><p>Start again from the app.</p>');
    return undefined;
  }

  if (!action && method === 'GET') {
    if (interaction.prompt.name === 'consent') {
      return finishInteraction(ctx, interaction, consentResult(interaction));
    }
    ctx.type = 'html';
    ctx.body = loginPage(uid, interaction.params.client_id);
    return undefined;
  }

  if (action === 'abort' && (method === 'POST' || method === 'GET')) {
    return finishInteraction(ctx, interaction, {
      error: 'access_denied',
      error_description: 'End-User aborted interaction',
    });
  }

  if (action === 'login' && method === 'POST') {
    const form = await readForm(ctx.req);
    const profile = resolveLogin(form.get('login') ?? ctx.query.login);
    if (!profile) {
      ctx.status = 400;
      ctx.type = 'html';
      ctx.body = page('Sign in', `<h1>Invalid login name</h1><p>Use letters, digits and _ . @ + -.</p>
        <p><a href="/interaction/${uid}">Back</a></p>`);
      return undefined;
    }
    return finishInteraction(ctx, interaction, {
      login: { accountId: profile.sub, remember: true },
      ...consentResult(interaction),
    });
  }

  ctx.status = 405;
  return undefined;
});

// ---------------------------------------------------------------- serve

// Before the issuer line: a SIGTERM sent as soon as it is read must find the
// handler (without it, node dies of the signal instead of exiting 0).
let stopping = false;
function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  console.error(`${signal}: shutting down`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

server.on('request', provider.callback());
process.stdout.write(`issuer=${ISSUER}\n`);
console.error(
  `oidc stand-in: client ${CLIENT_ID}, redirects ${REDIRECT_URIS.join(' ')}, resource ${RESOURCE}, `
  + `access tokens ${ACCESS_FORMAT}, ttl ${ACCESS_TTL}s, state ${STATE_FILE || 'in memory'}`,
);
