// Browser tests of the staff portal: a real `okey serve` (with its portal), a real OpenID
// Connect provider (npm's oidc-provider) and headless Chromium driven by playwright-core.
//
// The provider is reached through a small relay owned by the test: it passes everything through,
// and on request rewrites the ID token of the next code exchange (re-signed with another key,
// or with the provider's real key but already expired), so the portal's own checks are what
// refuse it. Screenshots and the downloaded receipt go to target/portal-artifacts/.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { spawn, execFileSync } = require('node:child_process');

const { chromium } = require('playwright-core');

const ROOT = path.resolve(__dirname, '..', '..');
const OKEY = process.env.OKEY_BIN || path.join(ROOT, 'target', 'debug', 'okey');
const ARTIFACTS = path.join(ROOT, 'target', 'portal-artifacts');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const CLIENT_ID = 'okey-portal';
const CLIENT_SECRET = crypto.randomBytes(32).toString('base64url');

const UNITS = `id,kind,name,parent,under_contract
RECTORAT,rectorat,Rectorat,,
SUPPORT,support_centre,Centre de support,RECTORAT,
DSI,it_department,DSI,RECTORAT,
9740001H,school,Lycée A,RECTORAT,yes
0750654D,school,Lycée B,RECTORAT,yes
`;
const PEOPLE = `id,name,email,unit,functions
f.head,Françoise Head,f.head@ac-example.fr,9740001H,head
f.staff,Frédéric Staff,f.staff@ac-example.fr,9740001H,staff
b.head,Bernard Head,b.head@ac-example.fr,0750654D,head
s.agent,Sophie Agent,s.agent@ac-example.fr,SUPPORT,support
`;
const SEED = '3132333435363738393031323334353637383930';

let tmp;
let okey;
let provider;
let relay;
let tamper = null; // null, 'forge' or 'expire': how the relay rewrites the next ID token
let portalUrl;
let issuer;
let signingKey; // the provider's real private key (the test made it)
let grpcAddr;

/** RFC 4226 HOTP of the test seed at `counter`, computed here (independently of okey). */
function hotp(counter) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = crypto.createHmac('sha1', Buffer.from(SEED, 'hex')).update(msg).digest();
  const off = mac[19] & 0xf;
  const bin = ((mac[off] & 0x7f) << 24) | (mac[off + 1] << 16) | (mac[off + 2] << 8) | mac[off + 3];
  return String(bin % 1e6).padStart(6, '0');
}

/** Whether okey accepts `code` for `serial` (`okey verify`: exit 0 accepted, 1 rejected). */
function verify(serial, code) {
  try {
    cli(grpcAddr, ['verify', '--serial', serial], { OKEY_PASSCODE: code });
    return true;
  } catch (e) {
    if (e.status === 1) return false;
    throw e;
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

async function waitFor(url, ms = 60000) {
  const end = Date.now() + ms;
  for (;;) {
    try {
      const r = await fetch(url);
      if (r.status < 500) return;
    } catch (_) { /* not yet */ }
    if (Date.now() > end) throw new Error(`${url} did not answer`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function cli(grpc, args, env = {}) {
  return execFileSync(OKEY, args, {
    env: {
      ...process.env,
      OKEY_SERVER: `http://${grpc}`,
      OKEY_API_KEY_FILE: path.join(tmp, 'data', 'admin.key'),
      ...env,
    },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

const b64 = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

function resign(idToken, mutate, key) {
  const [h, p] = idToken.split('.');
  const header = JSON.parse(Buffer.from(h, 'base64url'));
  const payload = mutate(JSON.parse(Buffer.from(p, 'base64url')));
  const input = `${b64(header)}.${b64(payload)}`;
  const sig = crypto.sign('sha256', Buffer.from(input), key).toString('base64url');
  return `${input}.${sig}`;
}

function rewrite(idToken, mode) {
  if (mode === 'forge') {
    // Another key under the provider's key id, and another person.
    const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    return resign(idToken, (c) => ({ ...c, preferred_username: 's.agent' }), privateKey);
  }
  // The provider's own key, but expired ten minutes ago.
  const now = Math.floor(Date.now() / 1000);
  return resign(idToken, (c) => ({ ...c, iat: now - 1200, exp: now - 600 }), signingKey);
}

function startRelay(port, upstream) {
  const server = http.createServer((req, res) => {
    const up = http.request(
      { host: '127.0.0.1', port: upstream, method: req.method, path: req.url, headers: req.headers },
      (ur) => {
        const mode = tamper;
        if (!(mode && req.url.startsWith('/token') && ur.statusCode === 200)) {
          res.writeHead(ur.statusCode, ur.headers);
          ur.pipe(res);
          return;
        }
        tamper = null;
        const chunks = [];
        ur.on('data', (c) => chunks.push(c));
        ur.on('end', () => {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          body.id_token = rewrite(body.id_token, mode);
          const out = Buffer.from(JSON.stringify(body));
          res.writeHead(200, { ...ur.headers, 'content-length': out.length });
          res.end(out);
        });
      },
    );
    req.pipe(up);
    up.on('error', () => { res.writeHead(502); res.end(); });
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

async function startProvider(port, relayPort, portalPort) {
  const { default: Provider } = await import('oidc-provider');
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  signingKey = privateKey;
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'test-key-1', use: 'sig', alg: 'RS256' };
  issuer = `http://127.0.0.1:${relayPort}`;
  const oidc = new Provider(issuer, {
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: [`http://127.0.0.1:${portalPort}/oidc/retour`],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    jwks: { keys: [jwk] },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    claims: { openid: ['sub'], profile: ['preferred_username', 'name'], email: ['email'] },
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    async findAccount(_ctx, id) {
      return {
        accountId: id,
        async claims() {
          return { sub: id, preferred_username: id, name: id, email: `${id}@ac-example.fr` };
        },
      };
    },
    features: { devInteractions: { enabled: true } },
  });
  oidc.proxy = true;
  oidc.on('server_error', (_ctx, e) => console.error('provider:', e));
  return new Promise((resolve) => {
    const s = oidc.listen(port, '127.0.0.1', () => resolve(s));
  });
}

before(async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'okey-portal-'));
  const [grpcPort, portalPort, providerPort, relayPort] = await Promise.all(
    [freePort(), freePort(), freePort(), freePort()],
  );
  provider = await startProvider(providerPort, relayPort, portalPort);
  relay = await startRelay(relayPort, providerPort);
  const secretFile = path.join(tmp, 'client.secret');
  fs.writeFileSync(secretFile, `${CLIENT_SECRET}\n`, { mode: 0o600 });
  const grpc = `127.0.0.1:${grpcPort}`;
  grpcAddr = grpc;
  portalUrl = `http://127.0.0.1:${portalPort}`;
  const log = fs.openSync(path.join(ARTIFACTS, 'okey-serve.log'), 'w');
  okey = spawn(OKEY, [
    'serve', '--listen', grpc, '--data-dir', path.join(tmp, 'data'),
    '--portal-listen', `127.0.0.1:${portalPort}`,
    '--portal-issuer', issuer,
    '--portal-client-id', CLIENT_ID,
    '--portal-client-secret-file', secretFile,
    '--audit-syslog', 'false',
  ], { stdio: ['ignore', log, log], env: { ...process.env, OKEY_LOG: 'info' } });
  await waitFor(`${portalUrl}/`);
  fs.writeFileSync(path.join(tmp, 'units.csv'), UNITS);
  fs.writeFileSync(path.join(tmp, 'people.csv'), PEOPLE);
  cli(grpc, ['directory', 'import', path.join(tmp, 'people.csv'), path.join(tmp, 'units.csv')]);
  cli(grpc, ['lot', 'create', '2D-A', '--kind', '2d', '--unit', '9740001H', '--name', 'Lycée A']);
  cli(grpc, ['lot', 'create', '2D-B', '--kind', '2d', '--unit', '0750654D', '--name', 'Lycée B']);
  for (const serial of ['A-0001', 'A-0002', 'A-0003', 'B-0001']) {
    cli(grpc, ['token', 'import', '--serial', serial], { OKEY_SEED: SEED });
  }
  cli(grpc, ['lot', 'register', '2D-A', 'A-0001', 'A-0002', 'A-0003']);
  cli(grpc, ['lot', 'register', '2D-B', 'B-0001']);
});

after(async () => {
  if (okey) {
    okey.kill('SIGTERM');
    await new Promise((r) => okey.once('exit', r));
  }
  if (relay) relay.close();
  if (provider) provider.close();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

/** A browser of its own: a fresh profile directory. */
async function browser() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'okey-chromium-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    acceptDownloads: true,
    locale: 'fr-FR',
  });
  const page = context.pages()[0] || (await context.newPage());
  return {
    context,
    page,
    async close() {
      await context.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** Log in at the provider as `login`; returns the page the portal shows afterwards. */
async function login(page, login) {
  await page.goto(`${portalUrl}/`);
  await page.getByRole('link', { name: /Se connecter/ }).click();
  await page.waitForURL((u) => u.href.startsWith(issuer));
  await page.fill('input[name=login]', login);
  await page.fill('input[name=password]', 'any');
  await page.click('button[type=submit]');
  // The consent screen (first login of this account at this client).
  if (page.url().startsWith(issuer)) {
    await page.click('button[type=submit]');
  }
  await page.waitForURL((u) => u.href.startsWith(portalUrl));
}

async function axe(page, name) {
  const source = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
  // Through the DevTools protocol: the portal's CSP forbids every script of the page's own.
  await page.evaluate(source);
  const result = await page.evaluate(() => window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
  }));
  fs.writeFileSync(path.join(ARTIFACTS, `axe-${name}.json`), JSON.stringify(result.violations, null, 2));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad.map((v) => `${v.id}: ${v.help}`), [], `axe on ${name}`);
}

let manager; // f.head's browser, logged in

test('a lot manager logs in through the provider and sees their lot only', async () => {
  manager = await browser();
  const { page } = manager;
  await login(page, 'f.head');
  await shot(page, '01-accueil');
  await assert.doesNotReject(page.getByRole('heading', { level: 1, name: 'Accueil' }).waitFor());
  const body = await page.textContent('main');
  assert.match(body, /Françoise Head/);
  assert.match(body, /Gérer les clefs du lot 2D-A/);
  assert.doesNotMatch(body, /2D-B/);
  await axe(page, 'accueil');
});

test('"gérer les clefs": the lot keys table filters and sorts', async () => {
  const { page } = manager;
  await page.getByRole('link', { name: 'Gérer les clefs du lot 2D-A' }).click();
  const rows = () => page.$$eval('table tbody tr td:first-child', (tds) => tds.map((t) => t.textContent.trim()));
  assert.deepEqual(await rows(), ['A-0001', 'A-0002', 'A-0003']);
  await page.getByRole('link', { name: /Numéro de série/ }).click();
  assert.deepEqual(await rows(), ['A-0003', 'A-0002', 'A-0001'], 'descending after a second click');
  await page.fill('#recherche', '0002');
  await page.getByRole('button', { name: 'Filtrer' }).click();
  assert.deepEqual(await rows(), ['A-0002']);
  await page.selectOption('#etat', 'lost');
  await page.getByRole('button', { name: 'Filtrer' }).click();
  assert.deepEqual(await rows(), []);
  await page.goto(`${portalUrl}/lots/2D-A`);
  await shot(page, '02-gerer-les-clefs');
  await axe(page, 'gerer-les-clefs');
});

test('the lot manager hands a key over and downloads its PDF receipt', async () => {
  const { page } = manager;
  await page.getByRole('link', { name: 'A-0001' }).click();
  await page.getByRole('heading', { level: 1, name: 'Gérer la clef A-0001' }).waitFor();
  await axe(page, 'gerer-la-clef');
  await page.getByLabel('Titulaire (identifiant dans l\'annuaire)').fill('f.staff');
  await page.getByLabel('Lieu de la remise').fill('Secrétariat du lycée');
  await page.getByRole('button', { name: 'Remettre la clef' }).click();
  await page.getByRole('status').waitFor();
  assert.match(await page.textContent('main'), /remise à son titulaire/);
  assert.match(await page.textContent('dl'), /f\.staff/);
  await shot(page, '03-remise');
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('link', { name: /Bordereau de remise RM-/ }).click(),
  ]);
  const file = path.join(ARTIFACTS, 'bordereau-remise.pdf');
  await download.saveAs(file);
  const pdf = fs.readFileSync(file);
  assert.equal(pdf.subarray(0, 5).toString(), '%PDF-');
  const text = execFileSync('pdftotext', [file, '-'], { encoding: 'utf8' });
  assert.match(text, /A-0001/);
  assert.match(text, /Frédéric Staff|f\.staff/);
});

test('the lot manager orders keys for their lot and cancels the order', async () => {
  const { page } = manager;
  await page.goto(`${portalUrl}/lots/2D-A`);
  await page.getByRole('link', { name: 'Commandes de clefs de ce lot' }).click();
  assert.match(await page.textContent('main'), /Aucune commande/);
  await page.getByLabel('Nombre de clefs').fill('25');
  await page.getByLabel('Commentaire (facultatif)').fill('Rentrée de septembre');
  await page.getByRole('button', { name: 'Commander' }).click();
  const row = page.locator('table tbody tr').first();
  assert.match(await row.textContent(), /25.*en cours.*Rentrée de septembre/s);
  await axe(page, 'commandes');
  await shot(page, '03b-commandes');
  await page.getByRole('button', { name: /Annuler la commande/ }).click();
  assert.match(await page.locator('table tbody tr').first().textContent(), /annulée/);
  // Bad input: nothing ordered, a French page says why.
  const csrf = await page.inputValue('input[name=csrf] >> nth=0');
  const bad = await manager.context.request.post(`${portalUrl}/lots/2D-A/commandes`, {
    form: { csrf, quantite: '0' },
    maxRedirects: 0,
  });
  assert.equal(bad.status(), 400);
  assert.match(await bad.text(), /Saisie incorrecte/);
  await page.reload();
  assert.equal(await page.locator('table tbody tr').count(), 1, 'no second order');
});

test('a form without the session CSRF token is refused and changes nothing', async () => {
  const { page, context } = manager;
  const r = await context.request.post(`${portalUrl}/clefs/A-0002/perdue`, {
    form: { commentaire: 'sans jeton' },
    maxRedirects: 0,
  });
  assert.equal(r.status(), 403);
  assert.match(await r.text(), /Formulaire refusé/);
  const wrong = await context.request.post(`${portalUrl}/clefs/A-0002/perdue`, {
    form: { csrf: 'x'.repeat(43), commentaire: 'mauvais jeton' },
    maxRedirects: 0,
  });
  assert.equal(wrong.status(), 403);
  await page.goto(`${portalUrl}/clefs/A-0002`);
  assert.match(await page.textContent('dl'), /livrée/, 'still delivered');
});

test("another school's key and lot are not reachable by URL", async () => {
  const { page } = manager;
  const r = await page.goto(`${portalUrl}/clefs/B-0001`);
  assert.equal(r.status(), 403);
  assert.match(await page.textContent('main'), /Accès refusé/);
  assert.doesNotMatch(await page.textContent('main'), /Bernard/);
  await shot(page, '04-acces-refuse');
  await axe(page, 'acces-refuse');
  const lot = await page.goto(`${portalUrl}/lots/2D-B`);
  assert.equal(lot.status(), 403);
  const pdf = await page.goto(`${portalUrl}/clefs/B-0001/bordereaux/x`);
  assert.ok([403, 404].includes(pdf.status()), `receipt of another school: ${pdf.status()}`);
  // Nor by a form with this session's own CSRF token.
  await page.goto(`${portalUrl}/clefs/A-0002`);
  const csrf = await page.inputValue('input[name=csrf] >> nth=0');
  const lost = await manager.context.request.post(`${portalUrl}/clefs/B-0001/perdue`, {
    form: { csrf, commentaire: 'pas la mienne' },
    maxRedirects: 0,
  });
  assert.equal(lost.status(), 403);
  assert.match(await lost.text(), /Accès refusé/);
});

test('someone the directory does not hold cannot log in', async () => {
  const b = await browser();
  try {
    await login(b.page, 'x.inconnu');
    assert.match(await b.page.textContent('main'), /Connexion refusée/);
    const r = await b.page.goto(`${portalUrl}/`);
    assert.equal(r.status(), 200);
    assert.match(await b.page.textContent('main'), /Se connecter/, 'still logged out');
  } finally {
    await b.close();
  }
});

test('a lot manager cannot unlock or resync: the support centre does', async () => {
  const { page, context } = manager;
  await page.goto(`${portalUrl}/clefs/A-0001`);
  const csrf = await page.inputValue('input[name=csrf] >> nth=0');
  const r = await context.request.post(`${portalUrl}/support/A-0001/deblocage`, {
    form: { csrf },
    maxRedirects: 0,
  });
  assert.equal(r.status(), 403);
  assert.match(await r.text(), /Accès refusé/);
});

test('every answer carries the security headers', async () => {
  const r = await fetch(`${portalUrl}/`);
  const csp = r.headers.get('content-security-policy');
  assert.match(csp, /default-src 'none'/);
  assert.doesNotMatch(csp, /unsafe-inline|script-src/);
  assert.equal(r.headers.get('x-frame-options'), 'DENY');
  assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
  const missing = await fetch(`${portalUrl}/nulle-part`);
  assert.equal(missing.status, 404);
  assert.match(await missing.text(), /Page introuvable/);
});

for (const mode of ['forge', 'expire']) {
  test(`an ID token ${mode === 'forge' ? 'signed with another key' : 'already expired'} is refused`, async () => {
    const b = await browser();
    const logFile = path.join(ARTIFACTS, 'okey-serve.log');
    const logStart = fs.statSync(logFile).size;
    try {
      tamper = mode;
      await login(b.page, 'f.head');
      assert.equal(tamper, null, 'the relay rewrote the token');
      assert.match(await b.page.textContent('main'), /Connexion refusée/);
      // Refused for the right reason, by the ID token check.
      const said = fs.readFileSync(logFile, 'utf8').slice(logStart);
      assert.match(said, mode === 'forge' ? /ID token refused: Signature verification failed/ : /ID token refused: Expired/);
      assert.doesNotMatch(said, /portal login person=/);
      await shot(b.page, `05-jeton-${mode}`);
      const r = await b.page.goto(`${portalUrl}/lots`);
      assert.equal(r.status(), 401, 'no session was opened');
    } finally {
      tamper = null;
      await b.close();
    }
  });
}

test('after logout the session cookie is refused, from any browser', async () => {
  const { page, context } = manager;
  await page.goto(`${portalUrl}/`);
  const cookies = await context.cookies(portalUrl);
  const session = cookies.find((c) => c.name === 'okey_session');
  assert.ok(session, 'a session cookie');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Lax');
  await page.getByRole('button', { name: 'Se déconnecter' }).click();
  assert.match(await page.textContent('main'), /session est terminée/);
  await shot(page, '06-deconnexion');
  const other = await browser();
  try {
    await other.context.addCookies([{ ...session }]);
    const r = await other.page.goto(`${portalUrl}/lots`);
    assert.equal(r.status(), 401);
    assert.match(await other.page.textContent('main'), /Connexion requise/);
  } finally {
    await other.close();
  }
  await manager.close();
});

test('the support centre finds a key by serial, its owner, and the found-key decision', async () => {
  const b = await browser();
  try {
    await login(b.page, 's.agent');
    await b.page.getByRole('link', { name: /Rechercher une clef par son numéro/ }).click();
    await b.page.getByLabel('Numéro de série').fill('A-0001');
    await b.page.getByRole('button', { name: 'Rechercher' }).click();
    const main = await b.page.textContent('main');
    assert.match(main, /Frédéric Staff/);
    assert.match(main, /2D-A/);
    assert.match(main, /remise/);
    await b.page.getByRole('button', { name: /Clef retrouvée/ }).click();
    assert.match(await b.page.textContent('[role=status]'), /appartient à un titulaire/);
    await shot(b.page, '07-support');
    await axe(b.page, 'support');

    // Unlock: A-0001 (handed over, so it may log in) locked by ten wrong codes refuses even
    // its right code until it is unlocked.
    for (let i = 0; i < 10; i += 1) assert.equal(verify('A-0001', '000000'), false);
    assert.equal(verify('A-0001', hotp(0)), false, 'locked');
    await b.page.goto(`${portalUrl}/support?numero=A-0001`);
    await b.page.getByRole('button', { name: 'Débloquer la clef' }).click();
    assert.match(await b.page.textContent('[role=status]'), /débloquée/);
    assert.equal(verify('A-0001', hotp(0)), true, 'accepted once unlocked');

    // Resync: A-0001 drifted to counter 500, beyond the look-ahead window.
    assert.equal(verify('A-0001', hotp(500)), false, 'outside the window');
    await b.page.goto(`${portalUrl}/support?numero=A-0001`);
    await b.page.getByLabel('Premier code').fill(hotp(501));
    await b.page.getByLabel('Code suivant').fill(hotp(502));
    await b.page.getByRole('button', { name: 'Resynchroniser' }).click();
    assert.match(await b.page.textContent('[role=status]'), /resynchronisée/);
    await shot(b.page, '08-resynchronisation');
    assert.equal(verify('A-0001', hotp(502)), false, 'a code used by the resync is not replayed');
    assert.equal(verify('A-0001', hotp(503)), true, 'the next code is accepted');
  } finally {
    await b.close();
  }
});
