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
const { spawn, execFileSync, spawnSync } = require('node:child_process');
const dgram = require('node:dgram');

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
CIRC-NORD,district,Circonscription Nord,RECTORAT,
`;
const PEOPLE = `id,name,email,unit,functions
f.head,Françoise Head,f.head@ac-example.fr,9740001H,head
f.staff,Frédéric Staff,f.staff@ac-example.fr,9740001H,staff
b.head,Bernard Head,b.head@ac-example.fr,0750654D,head
s.agent,Sophie Agent,s.agent@ac-example.fr,SUPPORT,support
c.prof,Claire Prof,c.prof@ac-example.fr,9740001H,staff
d.prof,Denis Prof,d.prof@ac-example.fr,9740001H,staff
e.prof,Emma Prof,e.prof@ac-example.fr,9740001H,staff
p.ien,Paul Ien,p.ien@ac-example.fr,CIRC-NORD,ien
n.un,Noémie Un,n.un@ac-example.fr,CIRC-NORD,staff
`;
const CHARTER_NUMBER = 'CH-2026-07';
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
let smtp; // the SMTP server (aiosmtpd, scripts/smtp-sink.py) and the file it writes
let mailFile;
let caCert; // the CA that signed okey's gRPC certificate
let radiusAddr; // okey's RADIUS listener, and the shared secret of its one client
const RADIUS_SECRET = crypto.randomBytes(24).toString('base64url');

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

/** A free UDP port on loopback (for okey's RADIUS listener). */
function freeUdpPort() {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * An Access-Request by FreeRADIUS's `radclient` (PAP, with a Message-Authenticator) for
 * `user` with `password`: the reply's type, "Access-Accept" or "Access-Reject".
 */
function radius(user, password) {
  const attrs = `User-Name = "${user}"\nUser-Password = "${password}"\nMessage-Authenticator = 0x00\n`;
  const r = spawnSync('radclient', ['-x', '-r', '1', '-t', '3', radiusAddr, 'auth', RADIUS_SECRET], {
    input: attrs, encoding: 'utf8',
  });
  const out = `${r.stdout}${r.stderr}`;
  const m = out.match(/Received (Access-Accept|Access-Reject|Access-Challenge)/);
  assert.ok(m, `radclient got an answer: ${out}`);
  return m[1];
}

/** A small, well-formed one-page PDF saying `text` (offsets of its xref table computed). */
function realPdf(text) {
  const esc = text.replace(/[\\()]/g, (c) => `\\${c}`);
  const stream = `BT /F1 14 Tf 72 720 Td (${esc}) Tj ET`;
  const objects = [
    '<< /Type /Catalog /Pages 2 0 R >>',
    '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
    '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>',
    `<< /Length ${stream.length} >>\nstream\n${stream}\nendstream`,
    '<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>',
  ];
  let out = '%PDF-1.4\n';
  const offsets = [];
  objects.forEach((o, i) => {
    offsets.push(out.length);
    out += `${i + 1} 0 obj\n${o}\nendobj\n`;
  });
  const xref = out.length;
  out += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const off of offsets) out += `${String(off).padStart(10, '0')} 00000 n \n`;
  out += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(out, 'latin1');
}

/** Start the real SMTP server of the mail tests (aiosmtpd) on a free port; returns the port. */
function startSmtp(out) {
  smtp = spawn('python3', [path.join(ROOT, 'scripts', 'smtp-sink.py'), '--out', out, '--port', '0'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let line = '';
    smtp.stdout.on('data', (c) => {
      line += c.toString('utf8');
      const m = line.match(/PORT (\d+)/);
      if (m) resolve(Number(m[1]));
    });
    smtp.once('exit', (code) => reject(new Error(`the SMTP server stopped (${code})`)));
  });
}

/** Wait for the mail to `to` whose subject matches `subject`; returns it. */
async function mailTo(to, subject, ms = 30000) {
  const end = Date.now() + ms;
  for (;;) {
    const got = fs.existsSync(mailFile)
      ? fs.readFileSync(mailFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
      : [];
    const m = got.find((x) => x.rcpt_tos.includes(to) && subject.test(x.subject));
    if (m) return m;
    if (Date.now() > end) {
      throw new Error(`no mail to ${to} matching ${subject}: ${got.map((x) => x.subject).join(' | ')}`);
    }
    await new Promise((r) => setTimeout(r, 200));
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
      OKEY_SERVER: `https://${grpc}`,
      OKEY_CA_CERT: caCert,
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
      post_logout_redirect_uris: [`http://127.0.0.1:${portalPort}/deconnecte`],
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
  mailFile = path.join(tmp, 'mails.jsonl');
  const smtpPort = await startSmtp(mailFile);
  const radiusPort = await freeUdpPort();
  radiusAddr = `127.0.0.1:${radiusPort}`;
  const radiusSecret = path.join(tmp, 'radius.secret');
  fs.writeFileSync(radiusSecret, `${RADIUS_SECRET}\n`, { mode: 0o600 });
  // gRPC with TLS, as in production: the portal then reaches okey's services through the
  // data directory's Unix socket, and the CLI through TLS with the test's own CA.
  caCert = path.join(tmp, 'ca.pem');
  const tlsCert = path.join(tmp, 'server.pem');
  const tlsKey = path.join(tmp, 'server.key');
  const caKey = path.join(tmp, 'ca.key');
  const ssl = (args) => execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  ssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
    '-subj', '/CN=okey test CA', '-keyout', caKey, '-out', caCert,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign']);
  const csr = path.join(tmp, 'server.csr');
  ssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-subj', '/CN=127.0.0.1', '-keyout', tlsKey, '-out', csr]);
  const ext = path.join(tmp, 'server.ext');
  fs.writeFileSync(ext, 'subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n');
  ssl(['x509', '-req', '-in', csr, '-CA', caCert, '-CAkey', caKey, '-CAcreateserial', '-days', '2',
    '-extfile', ext, '-out', tlsCert]);
  const configFile = path.join(tmp, 'okey.toml');
  fs.writeFileSync(configFile, `[tls]
cert = "${tlsCert}"
key = "${tlsKey}"
[radius]
listen = "${radiusAddr}"
[[radius.client]]
name = "vpn-test"
address = "127.0.0.1"
secret_file = "${radiusSecret}"
[smtp]
time_zone = "Indian/Reunion"
relay = "127.0.0.1"
port = ${smtpPort}
tls = "none"
from = "okey <okey@ac-example.fr>"
retry_initial_seconds = 1
retry_max_seconds = 1
poll_seconds = 1
timeout_seconds = 5
`);
  provider = await startProvider(providerPort, relayPort, portalPort);
  relay = await startRelay(relayPort, providerPort);
  const secretFile = path.join(tmp, 'client.secret');
  fs.writeFileSync(secretFile, `${CLIENT_SECRET}\n`, { mode: 0o600 });
  const grpc = `127.0.0.1:${grpcPort}`;
  grpcAddr = grpc;
  portalUrl = `http://127.0.0.1:${portalPort}`;
  const log = fs.openSync(path.join(ARTIFACTS, 'okey-serve.log'), 'w');
  okey = spawn(OKEY, [
    'serve', '--config', configFile, '--listen', grpc, '--data-dir', path.join(tmp, 'data'),
    '--portal-listen', `127.0.0.1:${portalPort}`,
    '--portal-issuer', issuer,
    '--portal-client-id', CLIENT_ID,
    '--portal-client-secret-file', secretFile,
    '--audit-syslog', 'false',
  ], { stdio: ['ignore', log, log], env: { ...process.env, OKEY_LOG: 'info' } });
  await waitFor(`${portalUrl}/`);
  // With [tls] on gRPC, the portal's way in: a socket only okey's user may open.
  const sock = fs.statSync(path.join(tmp, 'data', 'portal.sock'));
  assert.ok(sock.isSocket(), 'the portal socket');
  assert.equal(sock.mode & 0o777, 0o600);
  fs.writeFileSync(path.join(tmp, 'units.csv'), UNITS);
  fs.writeFileSync(path.join(tmp, 'people.csv'), PEOPLE);
  cli(grpc, ['directory', 'import', path.join(tmp, 'people.csv'), path.join(tmp, 'units.csv')]);
  cli(grpc, ['lot', 'create', '2D-A', '--kind', '2d', '--unit', '9740001H', '--name', 'Lycée A']);
  cli(grpc, ['lot', 'create', '2D-B', '--kind', '2d', '--unit', '0750654D', '--name', 'Lycée B']);
  cli(grpc, ['lot', 'create', '1D-NORD', '--kind', '1d', '--unit', 'CIRC-NORD', '--name', 'Circonscription Nord']);
  for (const serial of ['A-0001', 'A-0002', 'A-0003', 'B-0001']) {
    cli(grpc, ['token', 'import', '--serial', serial], { OKEY_SEED: SEED });
  }
  cli(grpc, ['lot', 'register', '2D-A', 'A-0001', 'A-0002', 'A-0003']);
  cli(grpc, ['lot', 'register', '2D-B', 'B-0001']);
  const charter = path.join(tmp, 'charte.pdf');
  fs.writeFileSync(charter, realPdf(`Charte d'utilisation des clefs OTP - ${CHARTER_NUMBER}`));
  cli(grpc, ['charter', 'publish', charter, '--number', CHARTER_NUMBER]);
});

after(async () => {
  if (okey) {
    okey.kill('SIGTERM');
    await new Promise((r) => okey.once('exit', r));
  }
  if (smtp) smtp.kill('SIGTERM');
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

test('the lot manager offers a pickup slot; bad input and another lot are refused', async () => {
  const { page } = manager;
  await page.goto(`${portalUrl}/lots/2D-A`);
  await page.getByRole('link', { name: 'Créneaux de retrait de ce lot' }).click();
  await page.getByRole('heading', { level: 1, name: 'Créneaux de retrait du lot 2D-A' }).waitFor();
  const before = await page.locator('table tbody tr').count();
  // The portal's dates follow [smtp] time_zone (La Réunion, UTC+4 all year): typed and shown there.
  await page.getByLabel('Date et heure (heure de Indian/Reunion, UTC+04:00)').fill('2031-03-14T09:30');
  await page.getByLabel('Lieu du retrait').fill('Salle B12, rez-de-chaussée');
  await page.getByRole('button', { name: 'Proposer ce créneau' }).click();
  const row = page.locator('table tbody tr', { hasText: 'Salle B12, rez-de-chaussée' });
  assert.match(await row.textContent(), /14\/03\/2031 09:30 \(UTC\+04:00\).*libre/s);
  await axe(page, 'creneaux');
  await shot(page, '03c-creneaux');
  // The slot is the one the server holds, at the minute typed (read back through the CLI).
  const listed = JSON.parse(cli(grpcAddr, ['request', 'slots', '2D-A', '--json'], keyFor('f.head')));
  const slot = listed.find((x) => x.place === 'Salle B12, rez-de-chaussée');
  assert.ok(slot, JSON.stringify(listed));
  assert.equal(Number(slot.at), Date.UTC(2031, 2, 14, 5, 30) / 1000, '09:30 in La Réunion is 05:30 UTC');
  // A date the field would never send: refused, nothing offered.
  const csrf = await page.inputValue('input[name=csrf] >> nth=0');
  const bad = await manager.context.request.post(`${portalUrl}/lots/2D-A/creneaux`, {
    form: { csrf, debut: '14/03/2031 09:30', lieu: 'Ailleurs' },
    maxRedirects: 0,
  });
  assert.equal(bad.status(), 400);
  assert.match(await bad.text(), /AAAA-MM-JJTHH:MM/);
  await page.reload();
  assert.equal(await page.locator('table tbody tr').count(), before + 1, 'one slot offered');
  // Another school's lot: neither its slots nor an offer.
  assert.equal((await page.goto(`${portalUrl}/lots/2D-B/creneaux`)).status(), 403);
  const other = await manager.context.request.post(`${portalUrl}/lots/2D-B/creneaux`, {
    form: { csrf, debut: '2031-03-14T10:00', lieu: 'Ailleurs' },
    maxRedirects: 0,
  });
  assert.equal(other.status(), 403);
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
  // RP-initiated logout: the provider asks to end its own session too, then sends the browser
  // back to the portal's logged-out page.
  await page.waitForURL((u) => u.href.startsWith(issuer));
  await page.getByRole('button', { name: 'Yes, sign me out' }).click();
  await page.waitForURL(`${portalUrl}/deconnecte`);
  assert.match(await page.textContent('main'), /session est terminée/);
  await axe(page, 'deconnecte');
  await shot(page, '06-deconnexion');
  // The provider's session is over: logging in again asks for the login, not a silent return.
  await page.getByRole('link', { name: 'Se reconnecter' }).click();
  await page.waitForURL((u) => u.href.startsWith(issuer));
  await page.locator('input[name=login]').waitFor();
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

/** Log in from a portal page that asked for it (the link of a mail): back on that page. */
async function loginFrom(page, url, who) {
  const r = await page.goto(url);
  assert.equal(r.status(), 401);
  assert.match(await page.textContent('main'), /Connexion requise/);
  await page.getByRole('link', { name: 'Se connecter' }).click();
  await page.waitForURL((u) => u.href.startsWith(issuer));
  await page.fill('input[name=login]', who);
  await page.fill('input[name=password]', 'any');
  await page.click('button[type=submit]');
  if (page.url().startsWith(issuer)) {
    await page.click('button[type=submit]');
  }
  await page.waitForURL((u) => u.href.startsWith(portalUrl));
}

test('a key from request to first login: asked with a PDF, approved from the mail, charter, PIN, hand-over, Verify', async () => {
  const requester = await browser();
  const head = await browser();
  try {
    // 1. The requester asks for a hardware key with a real PDF attached.
    const { page } = requester;
    await login(page, 'c.prof');
    await page.getByRole('link', { name: 'Ma clef', exact: true }).first().click();
    await page.getByRole('heading', { level: 1, name: 'Ma clef' }).waitFor();
    assert.match(await page.textContent('main'), /Vous n'avez pas de clef/);
    await axe(page, 'ma-clef-vide');
    await page.getByRole('link', { name: 'Demander ou renouveler ma clef' }).click();
    assert.equal(await page.inputValue('#valideur'), 'f.head', 'the N+1 is shown');
    assert.match(await page.textContent('main'), /Françoise Head/);
    await axe(page, 'demander');
    await shot(page, '10-demande');
    const proof = realPdf('Arrete de nomination de Claire Prof');
    await page.getByLabel('Motif de la demande').fill('accès aux applications de gestion');
    await page.getByLabel(/Justificatifs/).setInputFiles({
      name: 'arrete.pdf', mimeType: 'application/pdf', buffer: proof,
    });
    await page.getByRole('button', { name: 'Envoyer la demande' }).click();
    await page.getByRole('status').waitFor();
    const id = Number(page.url().match(/\/demandes\/(\d+)/)[1]);
    const main = await page.textContent('main');
    assert.match(main, /en attente de validation/);
    assert.match(main, /Télécharger arrete\.pdf \(application\/pdf/);
    await shot(page, '11-demande-envoyee');
    await axe(page, 'demande');

    // An attachment whose content is not what it claims is refused by the domain check.
    const csrf = await page.inputValue('input[name=csrf] >> nth=0');
    const bad = await requester.context.request.post(`${portalUrl}/demandes`, {
      multipart: {
        csrf, type: 'hardware', besoin: 'new', motif: 'faux', valideur: 'f.head',
        pieces: { name: 'faux.pdf', mimeType: 'application/pdf', buffer: Buffer.from('MZ not a pdf') },
      },
      maxRedirects: 0,
    });
    assert.equal(bad.status(), 400);
    assert.match(await bad.text(), /Saisie incorrecte/);

    // 2. The N+1 gets the mail, opens its link, logs in and lands on the request.
    const mail = await mailTo('f.head@ac-example.fr', new RegExp(`demande de clé n° ${id} .*à valider`));
    const link = mail.body.match(/https?:\/\/\S+\/demandes\/\d+/);
    assert.ok(link, `a link in the mail: ${mail.body}`);
    assert.equal(link[0], `${portalUrl}/demandes/${id}`);
    await loginFrom(head.page, link[0], 'f.head');
    assert.equal(head.page.url(), link[0], 'back on the request after login');
    await head.page.goto(`${portalUrl}/`);
    const home = await head.page.textContent('main');
    assert.match(home, /Demandes à valider/);
    assert.match(home, new RegExp(`Demande n° ${id}`));
    await axe(head.page, 'accueil-valideur');
    await head.page.getByRole('link', { name: `Demande n° ${id}` }).click();
    const [download] = await Promise.all([
      head.page.waitForEvent('download'),
      head.page.getByRole('link', { name: 'Télécharger arrete.pdf' }).click(),
    ]);
    const saved = path.join(ARTIFACTS, 'justificatif.pdf');
    await download.saveAs(saved);
    assert.deepEqual(fs.readFileSync(saved), proof, 'the attachment comes back byte for byte');
    assert.match(execFileSync('pdftotext', [saved, '-'], { encoding: 'utf8' }), /Arrete de nomination/);
    await axe(head.page, 'demande-valideur');
    await shot(head.page, '12-valideur');
    await head.page.getByRole('button', { name: 'Valider la demande' }).click();
    assert.match(await head.page.textContent('[role=status]'), /validée/);
    await mailTo('c.prof@ac-example.fr', /validée/);

    // Someone who is not a party to it sees neither the request nor its attachment.
    const other = await browser();
    try {
      await login(other.page, 'b.head');
      const r = await other.page.goto(`${portalUrl}/demandes/${id}`);
      assert.equal(r.status(), 403);
      const a = await other.page.goto(`${portalUrl}/demandes/${id}/pieces/1`);
      assert.equal(a.status(), 403);
    } finally {
      await other.close();
    }

    // 3. The requester reads the charter, types the number printed on it, signs, and
    // chooses the PIN (a weak one refused first).
    await page.goto(`${portalUrl}/demandes/${id}`);
    const [charterPdf] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('link', { name: /Lire la charte/ }).click(),
    ]);
    const charterFile = path.join(ARTIFACTS, 'charte.pdf');
    await charterPdf.saveAs(charterFile);
    const printed = execFileSync('pdftotext', [charterFile, '-'], { encoding: 'utf8' }).match(/CH-\d{4}-\d{2}/);
    assert.ok(printed, 'the charter carries its number');
    assert.doesNotMatch(await page.textContent('main'), /CH-2026-07/, 'the page does not give the number away');
    await page.getByLabel('Numéro de la charte').fill(printed[0]);
    await page.getByLabel(/J'ai lu la charte/).check();
    await axe(page, 'charte');
    await page.getByRole('button', { name: 'Signer la charte' }).click();
    assert.match(await page.textContent('[role=status]'), /charte est signée/);
    await page.getByLabel('Code PIN', { exact: true }).fill('1234');
    await page.getByLabel('Code PIN, à nouveau').fill('1234');
    await page.getByRole('button', { name: 'Enregistrer mon code PIN' }).click();
    const refused = await page.textContent('[role=alert]');
    assert.match(refused, /Code PIN refusé : ce code PIN est trop facile à deviner/);
    assert.doesNotMatch(await page.content(), /1234/, 'the PIN is not echoed');
    assert.equal(await page.inputValue('#pin'), '');
    await axe(page, 'pin-refuse');
    await shot(page, '13-pin-refuse');
    await page.getByLabel('Code PIN', { exact: true }).fill('2580');
    await page.getByLabel('Code PIN, à nouveau').fill('2581');
    await page.getByRole('button', { name: 'Enregistrer mon code PIN' }).click();
    assert.match(await page.textContent('[role=alert]'), /différentes/);
    await page.getByLabel('Code PIN', { exact: true }).fill('2580');
    await page.getByLabel('Code PIN, à nouveau').fill('2580');
    await page.getByRole('button', { name: 'Enregistrer mon code PIN' }).click();
    assert.match(await page.textContent('[role=status]'), /code PIN est enregistré/);
    assert.ok(!page.url().includes('2580'));
    const ready = await page.textContent('main');
    assert.match(ready, /clef prête à retirer/);
    const serial = ready.match(/Clef réservée\s*(A-\d{4})/)[1];
    await shot(page, '14-clef-prete');
    await mailTo('c.prof@ac-example.fr', /prête/);

    // 4. The head of school hands the key over and downloads the receipt.
    await head.page.goto(`${portalUrl}/clefs/${serial}`);
    await head.page.getByLabel('Titulaire (identifiant dans l\'annuaire)').fill('c.prof');
    await head.page.getByLabel('Lieu de la remise').fill('Secrétariat du lycée');
    await head.page.getByRole('button', { name: 'Remettre la clef' }).click();
    await head.page.getByRole('status').waitFor();
    await shot(head.page, '15-remise');
    const [receipt] = await Promise.all([
      head.page.waitForEvent('download'),
      head.page.getByRole('link', { name: /Bordereau de remise RM-/ }).click(),
    ]);
    const receiptFile = path.join(ARTIFACTS, 'bordereau-remise-demande.pdf');
    await receipt.saveAs(receiptFile);
    const receiptText = execFileSync('pdftotext', [receiptFile, '-'], { encoding: 'utf8' });
    assert.match(receiptText, new RegExp(serial));
    assert.match(receiptText, /Claire Prof|c\.prof/);

    // The requester's "ma clef": the key handed over, the request completed.
    await page.goto(`${portalUrl}/ma-clef`);
    const mine = await page.textContent('main');
    assert.match(mine, new RegExp(`${serial}\\s*remise`));
    assert.match(mine, /terminée/);
    await axe(page, 'ma-clef');
    await shot(page, '16-ma-clef');

    // 5. The key logs in over gRPC Verify with PIN ‖ OTP (the code computed here).
    const login1 = (passcode) => {
      try {
        cli(grpcAddr, ['verify', '--user', 'c.prof'], { OKEY_PASSCODE: passcode });
        return true;
      } catch (e) {
        if (e.status === 1) return false;
        throw e;
      }
    };
    assert.equal(login1(`1234${hotp(0)}`), false, 'a wrong PIN is rejected');
    assert.equal(login1(`2580${hotp(1)}`), true, 'PIN and OTP accepted');
    assert.equal(login1(`2580${hotp(1)}`), false, 'the same code is not accepted twice');
    // ... and over RADIUS, through FreeRADIUS's radclient, on the same verify path.
    assert.equal(radius('c.prof', `2580${hotp(2)}`), 'Access-Accept', 'RADIUS: PIN and OTP accepted');
    assert.equal(radius('c.prof', `2580${hotp(2)}`), 'Access-Reject', 'RADIUS: a replay is rejected');
    assert.equal(radius('c.prof', `1234${hotp(3)}`), 'Access-Reject', 'RADIUS: a wrong PIN is rejected');

    // 6. The holder changes the PIN of the key in use ("changer son code PIN", also when it
    // is forgotten): a code read from the key proves they hold it.
    await page.goto(`${portalUrl}/ma-clef`);
    await page.getByRole('link', { name: `Changer le code PIN de la clef ${serial}` }).click();
    await page.getByRole('heading', { level: 1, name: 'Changer mon code PIN' }).waitFor();
    await axe(page, 'changer-pin');
    await page.getByLabel('Code affiché par la clef').fill('000000');
    await page.getByLabel('Nouveau code PIN', { exact: true }).fill('7395');
    await page.getByLabel('Nouveau code PIN, à nouveau').fill('7395');
    await page.getByRole('button', { name: 'Enregistrer mon nouveau code PIN' }).click();
    assert.match(await page.textContent('[role=alert]'), /code de la clef n'est pas accepté/, 'a wrong code is refused');
    assert.equal(await page.inputValue('#pin'), '');
    assert.doesNotMatch(await page.content(), /7395/, 'the PIN is not echoed');
    await shot(page, '16b-pin-code-faux');
    await page.getByLabel('Code affiché par la clef').fill(hotp(3));
    await page.getByLabel('Nouveau code PIN', { exact: true }).fill('1111');
    await page.getByLabel('Nouveau code PIN, à nouveau').fill('1111');
    await page.getByRole('button', { name: 'Enregistrer mon nouveau code PIN' }).click();
    assert.match(await page.textContent('[role=alert]'), /trop facile à deviner/, 'a guessable PIN is refused, in French');
    await page.getByLabel('Code affiché par la clef').fill(hotp(3));
    await page.getByLabel('Nouveau code PIN', { exact: true }).fill('7395');
    await page.getByLabel('Nouveau code PIN, à nouveau').fill('7395');
    await page.getByRole('button', { name: 'Enregistrer mon nouveau code PIN' }).click();
    assert.match(await page.textContent('[role=status]'), /nouveau code PIN est enregistré/);
    assert.ok(!page.url().includes('7395'));
    await shot(page, '16c-nouveau-pin');
    assert.equal(radius('c.prof', `2580${hotp(4)}`), 'Access-Reject', 'the old PIN no longer logs in');
    assert.equal(radius('c.prof', `7395${hotp(4)}`), 'Access-Accept', 'the new PIN logs in over RADIUS');
    assert.equal(login1(`7395${hotp(5)}`), true, 'and over gRPC Verify');

    // 7. The holder declares the key lost from "ma clef": it stops logging in at once.
    await page.goto(`${portalUrl}/ma-clef`);
    await page.getByLabel('Circonstances (facultatif)').fill('perdue dans le bus');
    await page.getByRole('button', { name: `Déclarer la clef ${serial} perdue` }).click();
    assert.match(await page.textContent('[role=status]'), /déclarée perdue/);
    // The key is no longer the holder's: it leaves "mes clefs".
    assert.doesNotMatch(await page.textContent('main'), new RegExp(`${serial}\\s*remise`));
    await shot(page, '17-clef-perdue');
    assert.equal(login1(`7395${hotp(6)}`), false, 'a lost key no longer logs in');
    assert.equal(radius('c.prof', `7395${hotp(6)}`), 'Access-Reject', 'nor over RADIUS');
  } finally {
    await requester.close();
    await head.close();
  }
});

/** An API key bound to `person` (role manager), in a file for `cli`. */
const keys = {};
function keyFor(person) {
  if (keys[person]) return keys[person];
  const key = cli(grpcAddr, ['caller', 'create', `key-${person}`, '--role', 'manager', '--person', person]).trim();
  const file = path.join(tmp, `${person}.key`);
  fs.writeFileSync(file, `${key}\n`, { mode: 0o600 });
  keys[person] = { OKEY_API_KEY_FILE: file };
  return keys[person];
}

async function fileFromPage(page, type, reason) {
  await page.goto(`${portalUrl}/demandes/nouvelle`);
  await page.getByLabel(type === 'software' ? /Clef logicielle/ : /Clef matérielle/).check();
  await page.getByLabel('Motif de la demande').fill(reason);
  await page.getByLabel(/Justificatifs/).setInputFiles({
    name: 'justificatif.pdf', mimeType: 'application/pdf', buffer: realPdf(reason),
  });
  await page.getByRole('button', { name: 'Envoyer la demande' }).click();
  const done = page.url().match(/\/demandes\/\d+/);
  assert.ok(done, `the request is filed: ${await page.textContent('main')}`);
  return Number(page.url().match(/\/demandes\/(\d+)/)[1]);
}

async function softwareKey(page, ien) {
  await login(page, 'n.un');
  const soft = await fileFromPage(page, 'software', 'astreinte');
  cli(grpcAddr, ['request', 'approve', String(soft)], ien);
  await signCharter(page, soft);
  await page.getByLabel('Code PIN', { exact: true }).fill('4096');
  await page.getByLabel('Code PIN, à nouveau').fill('4096');
  await page.getByRole('button', { name: 'Enregistrer mon code PIN' }).click();
  assert.match(await page.textContent('[role=status]'), /code PIN est enregistré/);
  await page.getByLabel('Android').check();
  await axe(page, 'enrolement-choix');
  await page.getByRole('button', { name: 'Afficher le QR code' }).click();
  await page.getByRole('heading', { level: 1, name: 'Installer ma clef logicielle' }).waitFor();
  const qr = page.getByRole('img', { name: /QR code de votre clef logicielle/ });
  await qr.waitFor();
  assert.equal(await qr.evaluate((e) => e.tagName.toLowerCase()), 'svg');
  assert.ok((await qr.locator('path').getAttribute('d')).length > 100, 'modules drawn');
  const html = await page.content();
  assert.doesNotMatch(html, /otpauth:|secret=/, 'the URI is only in the QR code');
  assert.match(await page.textContent('main'), /Android|Play/);
  await axe(page, 'enrolement-qr');
  await shot(page, '18-qr-code');
}

async function signCharter(page, id) {
  await page.goto(`${portalUrl}/demandes/${id}`);
  await page.getByLabel('Numéro de la charte').fill(CHARTER_NUMBER);
  await page.getByLabel(/J'ai lu la charte/).check();
  await page.getByRole('button', { name: 'Signer la charte' }).click();
  assert.match(await page.textContent('[role=status]'), /charte est signée/);
}

test('a refusal carries its reason, a software key shows its QR code, a ready key is booked for pickup', async () => {
  const head = keyFor('f.head');
  const b = await browser();
  try {
    const { page } = b;
    await login(page, 'd.prof');
    // Refused, with the reason the requester reads on the page and in the mail.
    const refused = await fileFromPage(page, 'hardware', 'remplacement');
    await page.goto(`${portalUrl}/`);
    const head2 = await browser();
    try {
      await login(head2.page, 'f.head');
      await head2.page.goto(`${portalUrl}/demandes/${refused}`);
      // A refusal without a reason is bad input: nothing decided.
      const csrf = await head2.page.inputValue('input[name=csrf] >> nth=0');
      const r = await head2.context.request.post(`${portalUrl}/demandes/${refused}/decision`, {
        form: { csrf, decision: 'refuser', motif: '' }, maxRedirects: 0,
      });
      assert.equal(r.status(), 400);
      await head2.page.getByLabel(/Motif du refus/).fill('vous avez déjà une clef en cours');
      await head2.page.getByRole('button', { name: 'Refuser la demande' }).click();
      assert.match(await head2.page.textContent('[role=status]'), /refusée/);
    } finally {
      await head2.close();
    }
    await page.goto(`${portalUrl}/demandes/${refused}`);
    assert.match(await page.textContent('main'), /refusée[\s\S]*vous avez déjà une clef en cours/);
    const mail = await mailTo('d.prof@ac-example.fr', /refusée/);
    assert.match(mail.body, /vous avez déjà une clef en cours/);

    // A software key (district staff): approved, charter signed, PIN chosen, the QR code
    // shown once as an inline SVG.
    const n = await browser();
    try {
      await softwareKey(n.page, keyFor('p.ien'));
    } finally {
      await n.close();
    }

    // A hardware key ready for pickup: the requester books one of the offered slots.
    const c = await browser();
    try {
      await login(c.page, 'e.prof');
      const id = await fileFromPage(c.page, 'hardware', 'accès aux applications');
      cli(grpcAddr, ['request', 'approve', String(id)], head);
      await signCharter(c.page, id);
      await c.page.getByLabel('Code PIN', { exact: true }).fill('4739');
      await c.page.getByLabel('Code PIN, à nouveau').fill('4739');
      await c.page.getByRole('button', { name: 'Enregistrer mon code PIN' }).click();
      assert.match(await c.page.textContent('main'), /clef prête à retirer/);
      const at = Math.floor(Date.now() / 1000) + 2 * 86400;
      cli(grpcAddr, ['request', 'slots', '2D-A', '--offer', String(at), '--place', 'Secrétariat, bureau 12'], head);
      await c.page.goto(`${portalUrl}/demandes/${id}`);
      await c.page.getByLabel(/Secrétariat, bureau 12/).check();
      await axe(c.page, 'rendez-vous');
      await c.page.getByRole('button', { name: 'Réserver ce créneau' }).click();
      assert.match(await c.page.textContent('[role=status]'), /rendez-vous de retrait est pris/);
      assert.match(await c.page.textContent('dl'), /Rendez-vous de retrait[\s\S]*Secrétariat, bureau 12/);
      await shot(c.page, '19-rendez-vous');
    } finally {
      await c.close();
    }
  } finally {
    await b.close();
  }
});

test("the support desk's cases: the declarant reads and answers theirs, another school cannot", async () => {
  const capture = path.join(tmp, 'capture.pdf');
  fs.writeFileSync(capture, realPdf('Capture: clef refusee'));
  const opened = JSON.parse(cli(grpcAddr, [
    'case', 'open', '--attach', capture, '--kind', 'other', '--priority', 'minor', '--name', 'Françoise Head',
    '--function', 'proviseure', '--phone', '0262 00 00 00', '--unit-town', 'Saint-Denis',
    '--subject', 'Clef refusée au portail', '--population', 'personnels', '--description',
    'une clef remise ne fonctionne plus', '--location', 'secrétariat', '--json',
  ], keyFor('f.head')));
  const number = opened.number;
  assert.ok(number, `a case number: ${JSON.stringify(opened)}`);
  const b = await browser();
  try {
    await login(b.page, 'f.head');
    await b.page.getByRole('link', { name: 'Mes dossiers de support' }).click();
    await axe(b.page, 'dossiers');
    await b.page.getByRole('link', { name: `Dossier ${number}` }).click();
    assert.match(await b.page.textContent('main'), /une clef remise ne fonctionne plus/);
    await b.page.getByLabel('Votre message').fill('La clef A-0002 est toujours refusée.');
    await b.page.getByRole('button', { name: 'Envoyer la réponse' }).click();
    assert.match(await b.page.textContent('[role=status]'), /réponse est ajoutée/);
    assert.match(await b.page.textContent('main'), /f\.head[\s\S]*La clef A-0002 est toujours refusée\./);
    await axe(b.page, 'dossier');
    await shot(b.page, '20-dossier-support');
  } finally {
    await b.close();
  }
  const other = await browser();
  try {
    await login(other.page, 'b.head');
    const r = await other.page.goto(`${portalUrl}/support/dossiers/${number}`);
    assert.equal(r.status(), 403, "another school's case");
    await other.page.goto(`${portalUrl}/support/dossiers`);
    assert.doesNotMatch(await other.page.textContent('main'), new RegExp(number));
  } finally {
    await other.close();
  }
});

test('a case opened from the portal is handled there by the support centre: queue, internal note, assignment, resolution', async () => {
  const head = await browser();
  const agent = await browser();
  try {
    // The head of school opens a case with seed 004's form and a real PDF.
    const { page } = head;
    await login(page, 'f.head');
    await page.goto(`${portalUrl}/support/dossiers`);
    await page.getByRole('link', { name: 'Ouvrir un dossier de support' }).click();
    await page.getByRole('heading', { level: 1, name: 'Ouvrir un dossier de support' }).waitFor();
    assert.equal(await page.inputValue('#nom'), 'Françoise Head', 'the name from the directory');
    await axe(page, 'dossier-nouveau');
    await page.getByLabel('Type de demande').selectOption('desynchronised');
    await page.getByLabel(/Majeure/).check();
    await page.getByLabel('Fonction', { exact: true }).fill('proviseure');
    await page.getByLabel('Téléphone', { exact: true }).fill('0262 00 00 01');
    await page.getByLabel('Établissement ou service, et commune', { exact: true }).fill('Lycée A, Saint-Denis');
    await page.getByLabel('Objet', { exact: true }).fill('Clef désynchronisée au secrétariat');
    await page.getByLabel('Population concernée', { exact: true }).fill('personnels administratifs');
    await page.getByLabel('Description', { exact: true }).fill('les codes de la clef A-0003 sont refusés depuis lundi');
    await page.getByLabel('Localisation (salle, poste)', { exact: true }).fill('secrétariat, poste 2');
    await page.getByLabel('Numéro de série de la clef concernée', { exact: true }).fill('A-0003');
    await page.getByLabel(/Capture d'écran/).setInputFiles({
      name: 'capture.pdf', mimeType: 'application/pdf', buffer: realPdf('codes refuses'),
    });
    await page.getByRole('button', { name: 'Ouvrir le dossier' }).click();
    assert.match(await page.textContent('[role=status]'), /dossier est ouvert/);
    const number = (await page.textContent('h1')).match(/Dossier (\S+)/)[1];
    assert.match(number, /^[A-Z0-9-]+-\d{4}-\d{4}$/, number);
    await mailTo('f.head@ac-example.fr', new RegExp(`n° ${number} enregistrée`));
    await shot(page, '21-dossier-ouvert');
    // Not of the support centre: no desk forms, and the desk's moves are refused by the server.
    assert.equal(await page.getByRole('button', { name: 'Attribuer' }).count(), 0);
    const csrf = await page.inputValue('input[name=csrf] >> nth=0');
    const refused = await head.context.request.post(`${portalUrl}/support/dossiers/${number}/resolution`, {
      form: { csrf, resolution: 'résolu par moi-même' }, maxRedirects: 0,
    });
    assert.equal(refused.status(), 403);

    // The support centre: the queue, an internal note, the assignment, the resolution.
    await login(agent.page, 's.agent');
    await agent.page.goto(`${portalUrl}/support/dossiers`);
    await agent.page.getByRole('heading', { level: 1, name: 'Dossiers de support ouverts' }).waitFor();
    const row = agent.page.locator('table tbody tr', { hasText: number });
    assert.match(await row.textContent(), /majeure[\s\S]*Françoise Head[\s\S]*personne/);
    await axe(agent.page, 'dossiers-centre');
    await row.getByRole('link').click();
    assert.match(await agent.page.textContent('main'), /Diagnostic de la clef/);
    await agent.page.getByLabel('Votre message').fill('vérifier le compteur avant la resynchronisation');
    await agent.page.getByLabel(/Note interne/).check();
    await agent.page.getByRole('button', { name: 'Envoyer la réponse' }).click();
    assert.match(await agent.page.textContent('[role=status]'), /note interne est ajoutée/);
    await agent.page.getByLabel('Priorité').selectOption('1');
    await agent.page.getByRole('button', { name: 'Attribuer' }).click();
    assert.match(await agent.page.textContent('[role=status]'), /attribué/);
    assert.match(await agent.page.textContent('main'), /Suivi par\s*s\.agent/);
    assert.match(await agent.page.textContent('main'), /Priorité\s*bloquante/);
    await axe(agent.page, 'dossier-centre');
    await agent.page.getByLabel('Résolution (envoyée au déclarant)').fill('clef resynchronisée avec deux codes');
    await agent.page.getByRole('button', { name: 'Résoudre' }).click();
    assert.match(await agent.page.textContent('[role=status]'), /résolu/);
    await shot(agent.page, '22-dossier-resolu');
    const mail = await mailTo('f.head@ac-example.fr', new RegExp(`n° ${number} résolue`));
    assert.match(mail.body, /clef resynchronisée avec deux codes/);
    assert.doesNotMatch(mail.body, /compteur/, 'the internal note is never mailed');

    // The declarant reads the resolution, never the internal note.
    await page.goto(`${portalUrl}/support/dossiers/${number}`);
    const seen = await page.textContent('main');
    assert.match(seen, /résolu[\s\S]*clef resynchronisée avec deux codes/);
    assert.doesNotMatch(seen, /compteur/);
  } finally {
    await head.close();
    await agent.close();
  }
});
