// A real OIDC issuer for the Even & Piu integration tests (npm `oidc-provider` 9).
//
// Start: `node provider.mjs [CONFIG_JSON]` (or the same JSON in env IDP_CONFIG). Fields, all
// optional:
//   port            TCP port on 127.0.0.1; 0 (default) picks a free one. The issuer is
//                   `http://127.0.0.1:PORT` with the port actually bound.
//   audience        `aud` of access tokens for the default resource (default "even").
//   users           {"alice": ["sre"], ...}: each user is a confidential client_credentials
//                   client whose client_id is the username, and an account for the device flow.
//   client_secret   shared secret of those clients (default "secret"; tests pass a random one).
//   device_client_id  public device-flow client (default "piu").
//   access_token_ttl  seconds (default 600).
//   keys            private JWKs to sign with (default: a fresh P-256 key, plus RSA if `rsa`).
//   rsa             also generate an RSA key so RS256 can be used (default false).
//   alg             access-token signing alg: "ES256" (default) or "RS256" (needs an RSA key).
//   web_clients     [{client_id, redirect_uris}]: confidential authorization-code clients (a
//                   web app such as Even's console), secret `client_secret`, PKCE accepted.
// Env PORT / AUDIENCE override the JSON. Prints exactly one line `READY <issuer>` on stdout once
// listening; exits 0 on SIGTERM/SIGINT after closing the listener.
//
// Resource indicators map to audiences: `urn:even-piu:audience:<aud>` gives `aud: <aud>`; any
// other absolute URI is its own audience. The default resource is the configured audience, so a
// token request without `resource` still yields a JWT access token.
import * as crypto from 'node:crypto';
import * as http from 'node:http';
import process from 'node:process';

import Provider from 'oidc-provider';

const AUDIENCE_URN = 'urn:even-piu:audience:';

function loadConfig() {
  const raw = process.argv[2] ?? process.env.IDP_CONFIG ?? '{}';
  const config = JSON.parse(raw);
  if (process.env.PORT) config.port = Number(process.env.PORT);
  if (process.env.AUDIENCE) config.audience = process.env.AUDIENCE;
  return {
    port: config.port ?? 0,
    audience: config.audience ?? 'even',
    users: config.users ?? { alice: ['sre'], bob: [], auditor1: ['audit'] },
    clientSecret: config.client_secret ?? 'secret',
    deviceClientId: config.device_client_id ?? 'piu',
    accessTokenTTL: config.access_token_ttl ?? 600,
    keys: config.keys,
    rsa: Boolean(config.rsa),
    alg: config.alg ?? 'ES256',
    webClients: config.web_clients ?? [],
  };
}

function generateKeys(withRsa) {
  const jwk = (kp) => kp.privateKey.export({ format: 'jwk' });
  const ec = jwk(crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }));
  const keys = [{ ...ec, alg: 'ES256', use: 'sig', kid: `es256-${crypto.randomUUID()}` }];
  if (withRsa) {
    const rsa = jwk(crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }));
    keys.push({ ...rsa, alg: 'RS256', use: 'sig', kid: `rs256-${crypto.randomUUID()}` });
  }
  return keys;
}

function audienceOf(resourceIndicator) {
  return resourceIndicator.startsWith(AUDIENCE_URN)
    ? resourceIndicator.slice(AUDIENCE_URN.length)
    : resourceIndicator;
}

function buildConfiguration(cfg) {
  const groupsOf = (username) => cfg.users[username] ?? [];
  const defaultResourceIndicator = `${AUDIENCE_URN}${cfg.audience}`;

  const userClients = Object.keys(cfg.users).map((username) => ({
    client_id: username,
    client_secret: cfg.clientSecret,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_post',
  }));
  const deviceClient = {
    client_id: cfg.deviceClientId,
    // Public client: piu runs on a laptop and has no secret.
    token_endpoint_auth_method: 'none',
    // No refresh_token here: refresh tokens are not configured (see COMPONENTS.md).
    grant_types: ['urn:ietf:params:oauth:grant-type:device_code'],
    response_types: [],
    redirect_uris: [],
  };

  const webClients = cfg.webClients.map((client) => ({
    client_id: client.client_id,
    client_secret: cfg.clientSecret,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    redirect_uris: client.redirect_uris,
    token_endpoint_auth_method: 'client_secret_basic',
  }));

  return {
    clients: [...userClients, deviceClient, ...webClients],
    jwks: { keys: cfg.keys ?? generateKeys(cfg.rsa || cfg.alg === 'RS256') },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    // Only an EC key is guaranteed in the keystore, so the RS256 default would fail.
    clientDefaults: { id_token_signed_response_alg: 'ES256' },
    // Any login the dev interaction form accepts is an account; groups come from the user table.
    async findAccount(ctx, id) {
      return {
        accountId: id,
        async claims() {
          return { sub: id, preferred_username: id, groups: groupsOf(id) };
        },
      };
    },
    claims: { openid: ['sub'], profile: ['preferred_username', 'groups'] },
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      deviceFlow: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => defaultResourceIndicator,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, resourceIndicator) => ({
          audience: audienceOf(resourceIndicator),
          // Required string; Even authorizes by groups, not scopes, so the resource has none.
          scope: '',
          accessTokenTTL: cfg.accessTokenTTL,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: cfg.alg } },
        }),
      },
    },
    // client_credentials tokens speak for the user named by the client_id; device-flow and
    // authorization-code tokens for the account that logged in.
    async extraTokenClaims(ctx, token) {
      const username = token.kind === 'ClientCredentials' ? token.clientId : token.accountId;
      if (!username) return undefined;
      return { preferred_username: username, groups: groupsOf(username) };
    },
    ttl: {
      AccessToken: cfg.accessTokenTTL,
      ClientCredentials: cfg.accessTokenTTL,
      DeviceCode: 600,
      IdToken: 600,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
    },
  };
}

async function main() {
  const cfg = loadConfig();
  if (Object.hasOwn(cfg.users, cfg.deviceClientId)) {
    throw new Error(`user name ${cfg.deviceClientId} collides with the device-flow client id`);
  }

  // Bind first so port 0 works: the issuer URL must name the port actually bound.
  const server = http.createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(cfg.port, '127.0.0.1', resolve);
  });
  const issuer = `http://127.0.0.1:${server.address().port}`;

  const provider = new Provider(issuer, buildConfiguration(cfg));
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  server.on('request', provider.callback());

  const shutdown = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);

  process.stdout.write(`READY ${issuer}\n`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
