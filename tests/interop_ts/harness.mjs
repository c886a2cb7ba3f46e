// coco (TS) as a peer wallet for coco-actors' interop tests.
//
// One command per process: a JSON object on argv[2] or, when argv[2] is absent, on stdin
// (the Python wrapper uses stdin so that tokens never appear in a process list). Prints
// exactly one JSON line on stdout: the result, or {"error": "..."} with exit code 1.
//
//   {"cmd": "pubkey",  "state": DIR}                       -> {"pubkey": "02..."}
//   {"cmd": "fund",    "state": DIR, "mint": URL, "amount": N}  -> {"funded": N, "balance": B}
//   {"cmd": "send",    "state": DIR, "mint": URL, "amount": N, "lock": PUB?}
//        -> {"token": "cashuB...", "fee": F, "inputs": I, "balance": B}
//           F is the sender's swap fee, I the number of proofs that swap spent (0, 0 when
//           coco sent existing proofs as they were)
//   {"cmd": "receive", "state": DIR, "token": T}           -> {"received": R, "balance": B}
//   {"cmd": "balance", "state": DIR, "mint": URL?}         -> {"balance": B}
//
// The wallet is coco-cashu-core's Manager over its in-memory repositories; the state
// directory (state.json) carries what must survive between processes: the seed, the P2PK
// key ring, the spendable proofs and the deterministic-secret counters.
//
// What comes from where:
//   - pubkey:  coco-cashu-core `manager.keyring.generateKeyPair()` (NUT-13-style derivation,
//              m/129373'/10'/0'/0'/i, from the seed).
//   - fund:    coco-cashu-core `manager.quotes.createMintQuote` / `redeemMintQuote`; the quote's
//              state is checked once through cashu-ts `CashuMint.checkMintQuote` (the FakeWallet
//              settles a quote when it is asked about it).
//   - send, unlocked: coco-cashu-core `manager.send.prepareSend` + `executePreparedSend`.
//   - send, locked:   coco-cashu-core has no P2PK send (prepareSend takes no lock), so this
//              step is cashu-ts 2.9.0 (the CashuWallet coco builds, reached through a plugin):
//              `selectProofsToSend(..., includeFees=true)` over the wallet's proofs, then `CashuWallet.swap(amount, selected, {p2pk: {pubkey}})`;
//              the spent inputs and the change are written back to coco's proof repository.
//   - receive: coco-cashu-core `manager.wallet.receive`, which signs P2PK inputs (SIG_INPUTS,
//              one key, no multisig) with the key ring.
//   - balance: coco-cashu-core `manager.wallet.getBalances`.

import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';

import { CashuMint, getEncodedToken, getTokenMetadata } from '@cashu/cashu-ts';
import { MemoryRepositories, initializeCoco, normalizeMintUrl } from 'coco-cashu-core';

const QUOTE_PAID_TIMEOUT_MS = 10_000;

const hex = (bytes) => Buffer.from(bytes).toString('hex');
const unhex = (text) => new Uint8Array(Buffer.from(text, 'hex'));

function readCommand() {
  const text = process.argv[2] ?? readFileSync(0, 'utf8');
  const command = JSON.parse(text);
  if (typeof command !== 'object' || command === null || typeof command.cmd !== 'string') {
    throw new Error('the command must be a JSON object with a "cmd" string');
  }
  if (typeof command.state !== 'string' || command.state === '') {
    throw new Error('the command needs a "state" directory');
  }
  return command;
}

function positiveInt(value, name) {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new Error(`"${name}" must be a positive integer`);
  }
  return value;
}

// ------------------------------------------------------------------ state between processes

function loadState(dir) {
  const path = join(dir, 'state.json');
  if (!existsSync(path)) {
    return { seed: hex(randomBytes(64)), keypairs: [], proofs: [], counters: [], mints: [] };
  }
  return JSON.parse(readFileSync(path, 'utf8'));
}

function saveState(dir, state) {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'state.json');
  writeFileSync(`${path}.tmp`, JSON.stringify(state), { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
}

async function openWallet(state) {
  const repo = new MemoryRepositories();
  const seed = unhex(state.seed);
  // A plugin is coco-cashu-core's way to reach its services: the locked send needs the
  // CashuWallet that coco builds (with the keysets it fetched and verified).
  const services = {};
  const grab = {
    name: 'interop-harness',
    required: ['walletService'],
    onInit: ({ services: { walletService } }) => {
      services.walletService = walletService;
      return () => {};
    },
  };
  const manager = await initializeCoco({
    repo,
    seedGetter: async () => seed,
    plugins: [grab],
    watchers: { mintQuoteWatcher: { disabled: true }, proofStateWatcher: { disabled: true } },
    processors: { mintQuoteProcessor: { disabled: true } },
  });
  for (const k of state.keypairs) {
    await repo.keyRingRepository.setPersistedKeyPair({
      publicKeyHex: k.publicKeyHex,
      secretKey: unhex(k.secretKey),
      derivationIndex: k.derivationIndex,
    });
  }
  for (const url of state.mints) {
    await manager.mint.addMint(url, { trusted: true });
  }
  for (const c of state.counters) {
    await repo.counterRepository.setCounter(c.mintUrl, c.keysetId, c.counter);
  }
  const byMint = new Map();
  for (const p of state.proofs) {
    byMint.set(p.mintUrl, [...(byMint.get(p.mintUrl) ?? []), p]);
  }
  for (const [url, proofs] of byMint) {
    await repo.proofRepository.saveProofs(url, proofs);
  }
  return { manager, repo, services };
}

async function dumpState(state, repo) {
  const keypairs = await repo.keyRingRepository.getAllPersistedKeyPairs();
  state.keypairs = keypairs.map((k) => ({
    publicKeyHex: k.publicKeyHex,
    secretKey: hex(k.secretKey),
    derivationIndex: k.derivationIndex,
  }));
  state.proofs = (await repo.proofRepository.getAllReadyProofs()).map((p) => ({
    id: p.id, amount: p.amount, secret: p.secret, C: p.C, mintUrl: p.mintUrl, state: 'ready',
  }));
  state.counters = [];
  for (const url of state.mints) {
    for (const keyset of await repo.keysetRepository.getKeysetsByMintUrl(url)) {
      const counter = await repo.counterRepository.getCounter(url, keyset.id);
      if (counter) state.counters.push({ mintUrl: url, keysetId: keyset.id, counter: counter.counter });
    }
  }
}

async function addMint(manager, state, url) {
  const normalized = normalizeMintUrl(url);
  if (!state.mints.includes(normalized)) {
    await manager.mint.addMint(normalized, { trusted: true });
    state.mints.push(normalized);
  }
  return normalized;
}

async function balanceOf(manager, url) {
  const balances = await manager.wallet.getBalances();
  if (url != null) return balances[normalizeMintUrl(url)] ?? 0;
  return Object.values(balances).reduce((a, b) => a + b, 0);
}

// ------------------------------------------------------------------ commands

async function waitQuotePaid(url, quoteId) {
  const mint = new CashuMint(url);
  const deadline = Date.now() + QUOTE_PAID_TIMEOUT_MS;
  for (;;) {
    const quote = await mint.checkMintQuote(quoteId);
    if (quote.state === 'PAID' || quote.state === 'ISSUED') return;
    if (Date.now() > deadline) throw new Error(`mint quote not paid after ${QUOTE_PAID_TIMEOUT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100)); // polling another process
  }
}

async function fund(manager, state, command) {
  const url = await addMint(manager, state, command.mint);
  const amount = positiveInt(command.amount, 'amount');
  const quote = await manager.quotes.createMintQuote(url, amount);
  await waitQuotePaid(url, quote.quote);
  await manager.quotes.redeemMintQuote(url, quote.quote);
  return { funded: amount, balance: await balanceOf(manager, url) };
}

async function sendUnlocked(manager, url, amount) {
  const prepared = await manager.send.prepareSend(url, amount);
  const { token } = await manager.send.executePreparedSend(prepared.id);
  const inputs = prepared.needsSwap ? prepared.inputProofSecrets.length : 0;
  return { token: getEncodedToken(token), fee: prepared.fee, inputs };
}

async function sendLocked(repo, services, url, amount, lock) {
  // coco-cashu-core cannot lock a send: cashu-ts (coco's own CashuWallet for this mint) does
  // the swap into P2PK outputs.
  const { wallet } = await services.walletService.getWalletWithActiveKeysetId(url);
  const available = (await repo.proofRepository.getAvailableProofs(url)).map(
    ({ id, amount: a, secret, C }) => ({ id, amount: a, secret, C }),
  );
  const { send: selected } = wallet.selectProofsToSend(available, amount, true);
  const total = selected.reduce((a, p) => a + p.amount, 0);
  if (selected.length === 0 || total < amount + wallet.getFeesForProofs(selected)) {
    throw new Error('insufficient funds for the locked send');
  }
  const { keep, send } = await wallet.swap(amount, selected, { p2pk: { pubkey: lock } });
  await repo.proofRepository.deleteProofs(url, selected.map((p) => p.secret));
  await repo.proofRepository.saveProofs(
    url,
    keep.map(({ id, amount: a, secret, C }) => ({ id, amount: a, secret, C, mintUrl: url, state: 'ready' })),
  );
  const token = getEncodedToken({ mint: url, unit: 'sat', proofs: send });
  return { token, fee: wallet.getFeesForProofs(selected), inputs: selected.length };
}

async function send(manager, repo, services, state, command) {
  const url = await addMint(manager, state, command.mint);
  const amount = positiveInt(command.amount, 'amount');
  const sent = command.lock
    ? await sendLocked(repo, services, url, amount, command.lock)
    : await sendUnlocked(manager, url, amount);
  return { ...sent, balance: await balanceOf(manager, url) };
}

async function receive(manager, state, command) {
  if (typeof command.token !== 'string') throw new Error('"token" must be a string');
  const url = await addMint(manager, state, getTokenMetadata(command.token).mint);
  const before = await balanceOf(manager, url);
  await manager.wallet.receive(command.token);
  const after = await balanceOf(manager, url);
  return { received: after - before, balance: after };
}

async function run(command) {
  const state = loadState(command.state);
  const { manager, repo, services } = await openWallet(state);
  try {
    let result;
    switch (command.cmd) {
      case 'pubkey':
        result = { pubkey: (await manager.keyring.generateKeyPair()).publicKeyHex };
        break;
      case 'fund':
        result = await fund(manager, state, command);
        break;
      case 'send':
        result = await send(manager, repo, services, state, command);
        break;
      case 'receive':
        result = await receive(manager, state, command);
        break;
      case 'balance':
        result = { balance: await balanceOf(manager, command.mint) };
        break;
      default:
        throw new Error(`unknown command ${JSON.stringify(command.cmd)}`);
    }
    await dumpState(state, repo);
    saveState(command.state, state);
    return result;
  } finally {
    await manager.dispose();
  }
}

try {
  const result = await run(readCommand());
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
} catch (err) {
  // the message only: never the command, which may hold a token
  process.stdout.write(`${JSON.stringify({ error: `${err?.name ?? 'Error'}: ${err?.message ?? err}` })}\n`);
  process.exit(1);
}
