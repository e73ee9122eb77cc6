// The OpenID provider that nlds-rs's tests and CI run: npm `oidc-provider` (a certified OpenID
// Provider) configured as an identity service for NLDS. Started by scripts/oidc.sh; TEST
// INFRASTRUCTURE ONLY: it listens on loopback, keeps tokens in memory, and its /test/* routes
// mint tokens for anyone who asks. Never run it as a real identity service.
//
//   node scripts/oidc/provider.mjs        (scripts/oidc.sh start does this and waits for it)
//
// Issuer: http://127.0.0.1:9400 (discovery: /.well-known/openid-configuration). Endpoints:
//   /token  /device/auth  /device  /token/introspection  /token/revocation  /jwks  /me
//
// Accounts (no passwords; the account id is the login name and `sub`):
//   alice  groups climate, ocean   nlds_roles {climate: manager}
//   bob    groups ocean            nlds_roles {ocean: deputy}
//   carol  groups climate          (USER everywhere)
//   admin  groups nlds-admin       (the service operators' group)
//   svc-ingest  groups climate     (the service account behind client nlds-service)
//
// Every access token (JWT payload and introspection answer alike) carries these claims:
//   sub                 the account id (client_credentials tokens: the client id)
//   preferred_username  the NLDS user name (client_credentials: the mapped service account)
//   groups              ["climate", "ocean"]
//   nlds_roles          {"climate": "manager"}   roles above USER, per group
//   aud                 "nlds" for both resources below; iss = the issuer; exp, iat, jti,
//                       client_id, scope
//
// Resources (RFC 8707 resource indicators; a client that names none gets urn:nlds):
//   urn:nlds          audience "nlds", JWT access tokens (RS256, keys at /jwks)
//   urn:nlds:opaque   audience "nlds", opaque access tokens (validate through introspection)
//   urn:other         audience "other", JWT: a token meant for some other service
//
// Clients:
//   nlds-cli             public (no secret): device_code + refresh_token; scopes
//                        "openid offline_access nlds" (offline_access -> a refresh token)
//   nlds-service         confidential, client_credentials, client_secret_basic;
//                        its tokens map to account svc-ingest
//   nlds-server          confidential, introspection (and revocation) only: the NLDS server
//   Secrets: env NLDS_OIDC_SECRET_NLDS_SERVICE / NLDS_OIDC_SECRET_NLDS_SERVER, else the files
//   $NLDS_OIDC_DIR/secrets/<client id>.secret (created at random, mode 0600, on first start).
//
// Completing the device flow from a program (RFC 8628): the client POSTs
//   /device/auth  client_id=nlds-cli&scope=openid offline_access nlds
// and gets device_code + user_code. A test then approves the user code as a user with
//   POST /test/device/approve   user_code=<user_code>&login=alice        (form or JSON)
//   -> 200 {"approved": true, "login": "alice"}; 404 unknown/expired code; 409 already used
// (or `deny=true` -> the client's next poll gets access_denied). The client's polling of /token
// (grant_type=urn:ietf:params:oauth:grant-type:device_code) then returns the tokens. A person
// can use the browser instead: verification_uri_complete, then the development login form
// (any login name from the list above, any password) and the consent page.
//
// Other test-only routes (disabled with NLDS_OIDC_TEST_ROUTES=0):
//   POST /test/token  {"account": "alice", "client_id": "nlds-cli", "resource": "urn:nlds",
//                      "ttl": 300, "claims": {...}}
//        -> {"access_token", "token_type": "Bearer", "expires_in"}: a real access token as the
//        provider issues it (JWT or opaque by resource), revocable and introspectable;
//        `claims` (optional) replace/add custom claims (groups, nlds_roles, preferred_username).
//   POST /test/sign   {"claims": {...}, "alg": "RS256" | "ES256", "kid": "...", "foreign": true}
//        -> {"token"}: signs any JWT payload with the provider's own key (wrong issuer, expired,
//        not-yet-valid tokens that still have a valid signature); `kid` overrides the header;
//        `foreign: true` signs with a key that is not in the JWKS.
//
// Environment: NLDS_OIDC_PORT (9400), NLDS_OIDC_HOST (127.0.0.1), NLDS_OIDC_ISSUER
// (http://HOST:PORT), NLDS_OIDC_DIR (state: keys and secrets; $HOME/.cache/nlds-oidc),
// NLDS_OIDC_MODULES (node_modules holding oidc-provider; $NLDS_OIDC_DIR/node_modules),
// NLDS_OIDC_ACCESS_TOKEN_TTL (seconds, 600), NLDS_OIDC_TEST_ROUTES (1).
// Details and the matching nlds-server configuration: docs/AUTH.md.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { homedir } from 'node:os';
import { pathToFileURL } from 'node:url';

const HOST = process.env.NLDS_OIDC_HOST || '127.0.0.1';
const PORT = Number(process.env.NLDS_OIDC_PORT || 9400);
const ISSUER = (process.env.NLDS_OIDC_ISSUER || `http://${HOST}:${PORT}`).replace(/\/+$/, '');
const STATE = process.env.NLDS_OIDC_DIR || path.join(homedir(), '.cache', 'nlds-oidc');
const MODULES = process.env.NLDS_OIDC_MODULES || path.join(STATE, 'node_modules');
const AT_TTL = Number(process.env.NLDS_OIDC_ACCESS_TOKEN_TTL || 600);
const TEST_ROUTES = (process.env.NLDS_OIDC_TEST_ROUTES ?? '1') !== '0';

function log(msg) {
  process.stdout.write(`${new Date().toISOString()} [oidc] ${msg}\n`);
}

// oidc-provider lives in the cache (scripts/oidc.sh installs it there), not next to this file.
async function importPackage(name) {
  const dir = path.join(MODULES, name);
  let pkg;
  try {
    pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  } catch (e) {
    throw new Error(`cannot find ${name} in ${MODULES} (run scripts/oidc.sh start): ${e.message}`);
  }
  let entry = pkg.main || 'index.js';
  const exp = pkg.exports?.['.'] ?? pkg.exports;
  if (typeof exp === 'string') entry = exp;
  else if (exp?.import) entry = typeof exp.import === 'string' ? exp.import : exp.import.default;
  else if (exp?.default) entry = exp.default;
  return import(pathToFileURL(path.join(dir, entry)).href);
}

const { default: Provider, errors } = await importPackage('oidc-provider');

// ------------------------------------------------------------------ accounts and claims
const ACCOUNTS = {
  alice: { name: 'Alice A.', groups: ['climate', 'ocean'], nlds_roles: { climate: 'manager' } },
  bob: { name: 'Bob B.', groups: ['ocean'], nlds_roles: { ocean: 'deputy' } },
  carol: { name: 'Carol C.', groups: ['climate'], nlds_roles: {} },
  admin: { name: 'NLDS operator', groups: ['nlds-admin'], nlds_roles: {} },
  'svc-ingest': { name: 'ingest service', groups: ['climate'], nlds_roles: {} },
};

function accountClaims(id) {
  const a = ACCOUNTS[id];
  if (!a) return undefined;
  return { preferred_username: id, groups: [...a.groups], nlds_roles: { ...a.nlds_roles } };
}

// Claims the /test/token route asked to override, per token object.
const overrides = new WeakMap();

// ------------------------------------------------------------------ keys and secrets
fs.mkdirSync(path.join(STATE, 'secrets'), { recursive: true, mode: 0o700 });

function writePrivate(file, text) {
  fs.writeFileSync(file, text, { mode: 0o600 });
  fs.chmodSync(file, 0o600);
}

// The signing keys survive restarts (tokens issued before a restart stay verifiable).
function loadKeys() {
  const file = path.join(STATE, 'jwks.json');
  if (fs.existsSync(file)) return JSON.parse(fs.readFileSync(file, 'utf8'));
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const kid = () => crypto.randomBytes(8).toString('hex');
  const jwks = {
    keys: [
      { ...rsa, kid: `rs-${kid()}`, alg: 'RS256', use: 'sig' },
      { ...ec, kid: `es-${kid()}`, alg: 'ES256', use: 'sig' },
    ],
  };
  writePrivate(file, JSON.stringify(jwks));
  log(`generated signing keys in ${file}`);
  return jwks;
}

function clientSecret(clientId) {
  const env = `NLDS_OIDC_SECRET_${clientId.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
  if (process.env[env]) return process.env[env];
  const file = path.join(STATE, 'secrets', `${clientId}.secret`);
  if (!fs.existsSync(file)) {
    writePrivate(file, `${crypto.randomBytes(24).toString('base64url')}\n`);
    log(`generated the secret of client ${clientId} in ${file}`);
  }
  const secret = fs.readFileSync(file, 'utf8').trim();
  if (secret.length < 16) throw new Error(`${file}: secret shorter than 16 characters`);
  return secret;
}

const jwks = loadKeys();

// ------------------------------------------------------------------ resources
const RESOURCES = {
  'urn:nlds': { audience: 'nlds', scope: 'nlds', accessTokenFormat: 'jwt' },
  'urn:nlds:opaque': { audience: 'nlds', scope: 'nlds', accessTokenFormat: 'opaque' },
  'urn:other': { audience: 'other', scope: 'other', accessTokenFormat: 'jwt' },
};

function resourceServerInfo(resource, ttl) {
  const r = RESOURCES[resource];
  if (!r) return undefined;
  const info = { ...r, accessTokenTTL: ttl ?? AT_TTL };
  if (r.accessTokenFormat === 'jwt') info.jwt = { sign: { alg: 'RS256' } };
  return info;
}

// ------------------------------------------------------------------ provider
const configuration = {
  jwks,
  clients: [
    {
      client_id: 'nlds-cli',
      token_endpoint_auth_method: 'none',
      application_type: 'native',
      grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
      response_types: [],
      redirect_uris: [],
      scope: 'openid offline_access profile groups nlds other',
    },
    {
      client_id: 'nlds-service',
      client_secret: clientSecret('nlds-service'),
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: 'nlds other',
      nlds_account: 'svc-ingest',
    },
    {
      client_id: 'nlds-server',
      client_secret: clientSecret('nlds-server'),
      grant_types: [],
      response_types: [],
      redirect_uris: [],
    },
  ],
  extraClientMetadata: { properties: ['nlds_account'] },
  async findAccount(_ctx, id) {
    if (!ACCOUNTS[id]) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, name: ACCOUNTS[id].name, ...accountClaims(id) };
      },
    };
  },
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    groups: ['groups', 'nlds_roles'],
  },
  scopes: ['openid', 'offline_access', 'profile', 'groups', 'nlds', 'other'],
  async extraTokenClaims(_ctx, token) {
    if (token.kind !== 'AccessToken' && token.kind !== 'ClientCredentials') return undefined;
    let id = token.accountId;
    if (!id && token.kind === 'ClientCredentials') {
      const client = token.client ?? (await provider.Client.find(token.clientId));
      id = client?.nlds_account;
    }
    const claims = id ? accountClaims(id) : undefined;
    const extra = overrides.get(token);
    if (!claims && !extra) return undefined;
    return { ...claims, ...extra };
  },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    deviceFlow: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (_ctx, _client, oneOf) => oneOf ?? 'urn:nlds',
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resource) => {
        const info = resourceServerInfo(resource);
        if (!info) throw new errors.InvalidTarget(`unknown resource ${resource}`);
        return info;
      },
    },
  },
  ttl: {
    AccessToken: AT_TTL,
    ClientCredentials: AT_TTL,
    DeviceCode: 600,
    Grant: 14 * 86400,
    IdToken: 3600,
    Interaction: 3600,
    RefreshToken: 86400,
    Session: 86400,
  },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  issueRefreshToken: async (_ctx, client, source) =>
    client.grantTypeAllowed('refresh_token') && source.scopes.has('offline_access'),
};

const provider = new Provider(ISSUER, configuration);

provider.on('server_error', (_ctx, err) => log(`server_error: ${err.stack || err}`));
provider.on('grant.error', (_ctx, err) => log(`grant.error: ${err.message}`));

// ------------------------------------------------------------------ test-only routes
async function readBody(ctx) {
  const chunks = [];
  for await (const c of ctx.req) chunks.push(c);
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text) return {};
  if ((ctx.get('content-type') || '').includes('json')) return JSON.parse(text);
  return Object.fromEntries(new URLSearchParams(text));
}

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const b64url = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

// Keys that are never published: tokens they sign must be refused (unknown kid).
const FOREIGN = {
  RS256: crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey,
  ES256: crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey,
};

function signJwt(claims, alg = 'RS256', kid = undefined, foreign = false) {
  const jwk = jwks.keys.find((k) => k.alg === alg);
  if (!jwk) throw new HttpError(400, `no provider key for alg ${alg} (RS256 or ES256)`);
  const defaultKid = foreign ? `foreign-${alg.toLowerCase()}` : jwk.kid;
  const header = { alg, typ: 'at+jwt', kid: kid ?? defaultKid };
  const input = `${b64url(header)}.${b64url(claims)}`;
  const key = foreign ? FOREIGN[alg] : crypto.createPrivateKey({ key: jwk, format: 'jwk' });
  const sig = alg === 'ES256'
    ? crypto.sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' })
    : crypto.sign('sha256', Buffer.from(input), key);
  return `${input}.${sig.toString('base64url')}`;
}

async function mintToken(body) {
  const accountId = body.account;
  if (!ACCOUNTS[accountId]) throw new HttpError(400, `unknown account ${JSON.stringify(accountId)}`);
  const client = await provider.Client.find(body.client_id || 'nlds-cli');
  if (!client) throw new HttpError(400, `unknown client ${JSON.stringify(body.client_id)}`);
  const resource = body.resource || 'urn:nlds';
  const ttl = body.ttl === undefined ? AT_TTL : Number(body.ttl);
  if (!Number.isInteger(ttl) || ttl < 1) throw new HttpError(400, 'ttl must be a positive integer');
  const info = resourceServerInfo(resource, ttl);
  if (!info) throw new HttpError(400, `unknown resource ${JSON.stringify(resource)}`);
  const claims = typeof body.claims === 'string' ? JSON.parse(body.claims) : body.claims;

  const grant = new provider.Grant({ accountId, clientId: client.clientId });
  grant.addOIDCScope('openid');
  grant.addResourceScope(resource, info.scope);
  const grantId = await grant.save();

  const at = new provider.AccessToken({
    accountId,
    client,
    grantId,
    gty: 'test',
    scope: info.scope,
    expiresIn: ttl,
    resourceServer: new provider.ResourceServer(resource, info),
  });
  if (claims) overrides.set(at, claims);
  const value = await at.save();
  return { access_token: value, token_type: 'Bearer', expires_in: ttl };
}

async function approveDevice(body) {
  const userCode = String(body.user_code || '').toUpperCase().replace(/[^A-Z0-9]/g, '');
  if (!userCode) throw new HttpError(400, 'user_code is required');
  const code = await provider.DeviceCode.findByUserCode(userCode, { ignoreExpiration: true });
  if (!code) throw new HttpError(404, 'unknown user code');
  if (code.isExpired) throw new HttpError(404, 'user code expired');
  if (code.error || code.accountId || code.inFlight) throw new HttpError(409, 'user code already used');
  if (body.deny === true || body.deny === 'true') {
    Object.assign(code, { error: 'access_denied', errorDescription: 'End-User denied the request' });
    await code.save();
    return { approved: false };
  }
  const login = body.login;
  if (!ACCOUNTS[login]) throw new HttpError(400, `unknown login ${JSON.stringify(login)}`);

  const params = code.params || {};
  let resource = params.resource || 'urn:nlds';
  if (Array.isArray(resource)) [resource] = resource;
  const info = resourceServerInfo(resource);
  if (!info) throw new HttpError(400, `unknown resource ${JSON.stringify(resource)}`);
  const client = await provider.Client.find(code.clientId);
  const allowed = new Set((client.scope || '').split(' '));
  const requested = String(params.scope || 'openid').split(' ').filter((s) => allowed.has(s));
  const oidcScopes = requested.filter((s) => s !== info.scope);

  const grant = new provider.Grant({ accountId: login, clientId: code.clientId });
  if (oidcScopes.length) grant.addOIDCScope(oidcScopes.join(' '));
  grant.addResourceScope(resource, info.scope);
  const grantId = await grant.save();

  Object.assign(code, {
    accountId: login,
    authTime: Math.floor(Date.now() / 1000),
    grantId,
    scope: [...new Set([...oidcScopes, info.scope])].join(' '),
    resource,
  });
  await code.save();
  log(`device code approved for ${login}`);
  return { approved: true, login };
}

if (TEST_ROUTES) {
  provider.use(async (ctx, next) => {
    if (!ctx.path.startsWith('/test/')) return next();
    try {
      if (ctx.method !== 'POST') throw new HttpError(405, 'use POST');
      const body = await readBody(ctx);
      let out;
      switch (ctx.path) {
        case '/test/token':
          out = await mintToken(body);
          break;
        case '/test/sign':
          if (!body.claims || typeof body.claims !== 'object') throw new HttpError(400, 'claims (an object) is required');
          out = { token: signJwt(body.claims, body.alg, body.kid, body.foreign === true || body.foreign === 'true') };
          break;
        case '/test/device/approve':
          out = await approveDevice(body);
          break;
        default:
          throw new HttpError(404, `no test route ${ctx.path}`);
      }
      ctx.status = 200;
      ctx.body = out;
    } catch (e) {
      ctx.status = e.status || 400;
      ctx.body = { error: e.message };
    }
    log(`${ctx.method} ${ctx.path} -> ${ctx.status}`);
    return undefined;
  });
}

// One line per request (paths only: tokens travel in bodies and headers, never logged).
provider.use(async (ctx, next) => {
  await next();
  if (!ctx.path.startsWith('/test/')) log(`${ctx.method} ${ctx.path} -> ${ctx.status}`);
});

const server = provider.listen(PORT, HOST, () => {
  log(`listening on ${HOST}:${PORT}, issuer ${ISSUER}${TEST_ROUTES ? ' (test routes enabled)' : ''}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    log(`${sig}: stopping`);
    server.close();
    process.exit(0);
  });
}
