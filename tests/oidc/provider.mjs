// A campus identity provider for the tests: npm `oidc-provider` (OpenID Certified) on
// 127.0.0.1, with two clients and a few users whose ID tokens carry `preferred_username` and
// `groups`. Its own login page (devInteractions) accepts any password; consent is implied.
//
// The hub's client `xiji` is also given refresh tokens (a restart of this provider forgets them,
// as it forgets its sessions and grants: it keeps them in memory).
// Environment: XIJI_TEST_NODE_MODULES, PORT, REDIRECT_URI (the hub's callback), POST_LOGOUT_URI (optional).
// Control endpoints (for the tests only):
//   POST /control/groups  {"user": "ann", "groups": ["..."]}  changes a user's groups
//   POST /control/tamper  {"claims": {...}, "key": "provider" | "foreign-same-kid" |
//        "foreign-new-kid"}  re-signs the ID token of the next token response with these
//        claims changed (null removes one), with the provider's key or another one
//   GET  /control/kid     the signing key's id (a new one at every start: a restart rotates)
// Users: ann (students), tom (teachers), eve (visitors), anon (no user name); any other login
// is a student under its own name.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

// ESM packages under XIJI_TEST_NODE_MODULES (tests/setup-env.sh installs them there).
const nodeModules = process.env.XIJI_TEST_NODE_MODULES;
const load = (file) => import(pathToFileURL(path.join(nodeModules, file)).href);
const { default: Provider } = await load('oidc-provider/lib/index.js');
const jose = await load('jose/dist/webapi/index.js');

const port = Number(process.env.PORT);
const redirectUri = process.env.REDIRECT_URI;
const postLogoutUri = process.env.POST_LOGOUT_URI;
if (!port || !redirectUri) {
  console.error('PORT and REDIRECT_URI are required');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

const users = {
  ann: { preferred_username: 'ann', name: 'Ann Student', groups: ['students', 'ml-101'] },
  tom: { preferred_username: 'tom', name: 'Tom Teacher', groups: ['teachers', 'ml-101'] },
  eve: { preferred_username: 'eve', name: 'Eve Visitor', groups: ['visitors'] },
  anon: { name: 'No Username', groups: ['students'] },
};

async function newKey(kid) {
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  const jwk = await jose.exportJWK(privateKey);
  return { ...jwk, kid, alg: 'RS256', use: 'sig' };
}

const kid = `k-${randomBytes(6).toString('hex')}`;
const signingKey = await newKey(kid);
let tamper = null;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'xiji',
      client_secret: 'xiji-client-secret',
      redirect_uris: [redirectUri],
      post_logout_redirect_uris: postLogoutUri ? [postLogoutUri] : [],
      response_types: ['code'],
      grant_types: ['authorization_code', 'refresh_token'],
    },
    {
      client_id: 'other-app',
      client_secret: 'other-app-secret',
      redirect_uris: ['http://127.0.0.1:9/callback'],
      response_types: ['code'],
      grant_types: ['authorization_code'],
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(16).toString('hex')] },
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name'],
    groups: ['groups'],
  },
  conformIdTokenClaims: false,
  // Refresh tokens for the clients allowed the grant, without `offline_access` and consent.
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  // Every refresh rotates the refresh token, and a second use of a rotated one ends the grant
  // (the strictest providers' behaviour): the hub must never use one twice.
  rotateRefreshToken: true,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, ...(users[id] ?? { preferred_username: id, groups: ['students'] }) };
      },
    };
  },
  // A first-party application: no consent screen.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid profile groups');
    grant.addOIDCClaims(['preferred_username', 'name', 'groups']);
    await grant.save();
    return grant;
  },
});

async function readJson(ctx) {
  const chunks = [];
  for await (const c of ctx.req) chunks.push(c);
  return JSON.parse(Buffer.concat(chunks).toString() || '{}');
}

provider.use(async (ctx, next) => {
  if (ctx.path === '/control/kid') {
    ctx.body = { kid };
    return;
  }
  if (ctx.path === '/control/groups' && ctx.method === 'POST') {
    const { user, groups } = await readJson(ctx);
    users[user].groups = groups;
    ctx.body = { ok: true };
    return;
  }
  if (ctx.path === '/control/tamper' && ctx.method === 'POST') {
    tamper = await readJson(ctx);
    ctx.body = { ok: true };
    return;
  }
  await next();
  if (ctx.path === '/token' && ctx.method === 'POST' && tamper && ctx.status === 200
      && ctx.body?.id_token) {
    const t = tamper;
    tamper = null;
    const claims = jose.decodeJwt(ctx.body.id_token);
    for (const [k, v] of Object.entries(t.claims ?? {})) {
      if (v === null) delete claims[k]; else claims[k] = v;
    }
    let key = signingKey;
    if (t.key === 'foreign-same-kid') key = await newKey(kid);
    if (t.key === 'foreign-new-kid') key = await newKey(`foreign-${randomBytes(4).toString('hex')}`);
    const privateKey = await jose.importJWK(key, 'RS256');
    ctx.body = {
      ...ctx.body,
      id_token: await new jose.SignJWT(claims)
        .setProtectedHeader({ alg: 'RS256', kid: key.kid, typ: 'JWT' })
        .sign(privateKey),
    };
    console.log(`tampered id_token: key=${t.key ?? 'provider'}`);
  }
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer} kid=${kid}`);
});
