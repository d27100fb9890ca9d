#!/usr/bin/env node
// Runs a GGUF model through llama.cpp (the prebuilt CPU library that the
// node-llama-cpp package ships) and writes its next-token log-probabilities
// at every position of given token sequences, so that the tool's own forward
// pass can be checked against llama.cpp's.
//
//   node scripts/llamacpp-logprobs.mjs --model M.gguf --tokens T.json --out P.f32 [--threads N]
//   node scripts/llamacpp-logprobs.mjs --model M.gguf --texts S.json --out I.json
//
// T.json is a JSON array of sequences, each an array of token ids, fed
// exactly as given: no BOS is added, so a caller that wants one puts it
// first. Each sequence starts afresh at position 0 with an empty cache.
// P.f32 receives, sequence after sequence, positions x vocab little-endian
// float32 values, row p of a sequence being log p(next token | its tokens
// 0..p) over the whole vocabulary, computed here (in float64) by log-softmax
// from llama.cpp's raw logits. A one-line JSON summary goes to stdout.
//
// With --texts, S.json is a JSON array of strings, and I.json receives
// {"tokens": [[ids], ...]}: llama.cpp's own tokenization of each string with
// the GGUF's tokenizer (no BOS, special-token text left as text), to check a
// tokenizer written into the file against the tool's.
//
// The package is found under build/llamacpp (scripts/llamacpp-setup installs
// it there) or where NODE_LLAMA_CPP_DIR points. Nothing is downloaded or
// compiled: getLlama is told build "never", and a missing prebuilt binary is
// an error.
//
// What could make llama.cpp's numbers differ from a plain float32 forward
// pass is turned off: no GPU layers, the key/value cache in F32 rather than
// the default F16 (override with --kv-type), no flash attention, and a fixed
// thread count. No sampler touches the logits: with temperature 0 and no
// penalties or biases the logits are read before any sampling step.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL, fileURLToPath } from "node:url";

function fail(msg) {
    process.stderr.write(`llamacpp-logprobs: ${msg}\n`);
    process.exit(1);
}

function parseArgs(argv) {
    const opt = { threads: 1, kvType: "F32" };
    const names = { "--model": "model", "--tokens": "tokens", "--texts": "texts", "--out": "out", "--threads": "threads", "--kv-type": "kvType" };
    for (let i = 0; i < argv.length; i++) {
        const key = names[argv[i]];
        if (key === undefined || i + 1 >= argv.length)
            fail(`unknown or incomplete argument ${JSON.stringify(argv[i])}; usage: --model M.gguf (--tokens T.json | --texts S.json) --out FILE [--threads N] [--kv-type F32|F16]`);
        opt[key] = argv[++i];
    }
    for (const k of ["model", "out"])
        if (!opt[k])
            fail(`--${k} is required`);
    if (!opt.tokens === !opt.texts)
        fail("give one of --tokens and --texts");
    opt.threads = Number(opt.threads);
    if (!Number.isInteger(opt.threads) || opt.threads < 1)
        fail(`--threads must be a positive integer, not ${JSON.stringify(opt.threads)}`);
    return opt;
}

function readJSON(file) {
    try {
        return JSON.parse(fs.readFileSync(file, "utf8"));
    } catch (err) {
        fail(`${file}: ${err.message}`);
    }
}

function readTexts(file) {
    const texts = readJSON(file);
    if (!Array.isArray(texts) || texts.some((x) => typeof x !== "string"))
        fail(`${file}: expected a JSON array of strings`);
    return texts;
}

// writeAtomic writes beside the destination and renames, so that a reader
// never sees half a file.
function writeAtomic(file, data) {
    const tmp = `${file}.tmp-${process.pid}`;
    fs.writeFileSync(tmp, data);
    fs.renameSync(tmp, file);
}

function readSequences(file) {
    const seqs = readJSON(file);
    if (!Array.isArray(seqs) || seqs.length === 0)
        fail(`${file}: expected a non-empty JSON array of token-id arrays`);
    for (const [k, ids] of seqs.entries()) {
        if (!Array.isArray(ids) || ids.length === 0)
            fail(`${file}: sequence ${k} is not a non-empty array of token ids`);
        for (const [i, id] of ids.entries())
            if (!Number.isInteger(id) || id < 0)
                fail(`${file}: sequence ${k}, token ${i} is ${JSON.stringify(id)}, not a non-negative integer`);
    }
    return seqs;
}

async function importPackage() {
    const here = path.dirname(fileURLToPath(import.meta.url));
    const dir = process.env.NODE_LLAMA_CPP_DIR || path.join(here, "..", "build", "llamacpp");
    const entry = path.join(dir, "node_modules", "node-llama-cpp", "dist", "index.js");
    if (!fs.existsSync(entry))
        fail(`${entry} not found: run scripts/llamacpp-setup first`);
    const { version } = JSON.parse(fs.readFileSync(path.join(dir, "node_modules", "node-llama-cpp", "package.json"), "utf8"));
    return { version, ...(await import(pathToFileURL(entry).href)) };
}

// logSoftmax fills dst with logits - log(sum(exp(logits))), in float64.
function logSoftmax(dst, logits) {
    let max = -Infinity;
    for (const v of logits)
        if (v > max)
            max = v;
    let sum = 0;
    for (const v of logits)
        sum += Math.exp(v - max);
    const lse = max + Math.log(sum);
    for (let i = 0; i < logits.length; i++)
        dst[i] = logits[i] - lse;
}

const opt = parseArgs(process.argv.slice(2));
const texts = opt.texts ? readTexts(opt.texts) : null;
const seqs = opt.tokens ? readSequences(opt.tokens) : null;
if (!fs.existsSync(opt.model))
    fail(`${opt.model}: no such file`);
// Never fetch or build anything, whatever an option below would allow.
process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD = "true";
const { version, getLlama, LlamaLogLevel } = await importPackage();

const llama = await getLlama({
    gpu: false,
    build: "never",
    usePrebuiltBinaries: true,
    skipDownload: true,
    progressLogs: false,
    maxThreads: opt.threads,
    logLevel: LlamaLogLevel.error,
});
let model;
try {
    model = await llama.loadModel({ modelPath: opt.model, gpuLayers: 0, useMmap: false, checkTensors: true });
} catch (err) {
    fail(`${opt.model}: llama.cpp could not load it: ${err.message}`);
}
const summary = {
    vocab: model.fileInfo.metadata?.tokenizer?.ggml?.tokens?.length ?? null,
    architecture: model.fileInfo.metadata?.general?.architecture ?? null,
    nodeLlamaCpp: version,
    llamaCpp: llama.llamaCppRelease,
};
if (texts) {
    writeAtomic(opt.out, JSON.stringify({ tokens: texts.map((x) => Array.from(model.tokenize(x, false))) }));
    process.stdout.write(JSON.stringify(summary) + "\n");
    await model.dispose();
    await llama.dispose();
    process.exit(0);
}

// An id past the vocabulary would be read out of bounds inside llama.cpp, so
// check against the GGUF's own token list before evaluating.
const vocab = summary.vocab;
if (!Number.isInteger(vocab) || vocab <= 0)
    fail(`${opt.model}: no tokenizer.ggml.tokens list to size the vocabulary by`);
for (const [k, ids] of seqs.entries())
    for (const [i, id] of ids.entries())
        if (id >= vocab)
            fail(`${opt.tokens}: sequence ${k}, token ${i} is ${id}, outside the model's vocabulary of ${vocab}`);

// node-llama-cpp keeps one context slot free: with room for exactly
// n tokens it would erase the first ones (a "context shift") before
// evaluating the last, which changes that position's numbers.
const longest = Math.max(...seqs.map((ids) => ids.length));
const context = await model.createContext({
    contextSize: longest + 1,
    batchSize: longest,
    sequences: 1,
    threads: { ideal: opt.threads, min: opt.threads },
    flashAttention: false,
    experimentalKvCacheKeyType: opt.kvType,
    experimentalKvCacheValueType: opt.kvType,
});
const sequence = context.getSequence();
const positions = seqs.reduce((n, ids) => n + ids.length, 0);
const out = new Float32Array(positions * vocab);
const dense = new Float64Array(vocab);
const lp = new Float64Array(vocab);
let row = 0;
for (const [k, ids] of seqs.entries()) {
    await sequence.clearHistory();
    // Every input item asks for the raw logits of the token that follows
    // it; controlledEvaluate returns one output per such item, at its index.
    const items = ids.map((id) => [id, { generateNext: { logits: true } }]);
    let results;
    try {
        results = await sequence.controlledEvaluate(items);
    } catch (err) {
        fail(`${opt.model}: evaluation of sequence ${k} failed: ${err.message}`);
    }
    const kept = sequence.contextTokens;
    if (kept.length !== ids.length || kept.some((id, i) => id !== ids[i]))
        fail(`${opt.model}: sequence ${k}: llama.cpp's context no longer holds the ${ids.length} tokens fed (context size ${context.contextSize}); positions would be shifted`);
    for (let p = 0; p < ids.length; p++, row++) {
        const logits = results[p]?.next?.logits;
        if (!(logits instanceof Map))
            fail(`${opt.model}: sequence ${k}: llama.cpp returned no logits at position ${p}`);
        // The map holds every vocabulary entry once, sorted by logit; put
        // it back in id order and make sure none is missing.
        dense.fill(NaN);
        for (const [tok, v] of logits) {
            if (tok < 0 || tok >= vocab)
                fail(`${opt.model}: sequence ${k}, position ${p}: token id ${tok} outside a vocabulary of ${vocab}`);
            dense[tok] = v;
        }
        if (logits.size !== vocab || dense.some(Number.isNaN))
            fail(`${opt.model}: sequence ${k}, position ${p}: ${logits.size} logits, not the full vocabulary of ${vocab}`);
        logSoftmax(lp, dense);
        out.set(lp, row * vocab);
    }
}

writeAtomic(opt.out, Buffer.from(out.buffer, out.byteOffset, out.byteLength));
process.stdout.write(JSON.stringify({ ...summary, sequences: seqs.length, positions, kvType: opt.kvType, threads: opt.threads }) + "\n");
await context.dispose();
await model.dispose();
await llama.dispose();
