// Drives headless Chromium over pages built and served by the real relais binary, for
// tests/browser.rs. It only looks and clicks; every judgement is made by the Rust test on
// the facts printed here as one JSON object.
//
//   node pages.mjs CHROMIUM CONFIG_JSON
//
// CONFIG_JSON: { "base": "http://127.0.0.1:PORT", "pages": ["/", "/posts/x/"],
//   "replyPage": "/posts/x/", "replyText": "...", "server": "reader@social.test" }
import { chromium } from "playwright-core";

const [executablePath, configText] = process.argv.slice(2);
const config = JSON.parse(configText);

const VIEWPORTS = {
  desktop: { width: 1280, height: 800 },
  mobile: { width: 360, height: 740 },
};

// Runs in the page: what the test judges about layout and colours.
function pageFacts() {
  const rgba = (text) => {
    const m = /rgba?\(([^)]+)\)/.exec(text || "");
    if (!m) return null;
    const parts = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
    return { r: parts[0], g: parts[1], b: parts[2], a: parts.length > 3 ? parts[3] : 1 };
  };
  const luminance = (c) => {
    const f = (v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
  };
  const contrast = (a, b) => {
    const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (hi + 0.05) / (lo + 0.05);
  };
  const background = (el) => {
    for (let node = el; node; node = node.parentElement) {
      const c = rgba(getComputedStyle(node).backgroundColor);
      if (c && c.a > 0) return c;
    }
    return rgba(getComputedStyle(document.documentElement).backgroundColor) || { r: 255, g: 255, b: 255, a: 1 };
  };
  const doc = document.documentElement;
  const handles = Array.from(document.querySelectorAll("code.handle")).map((el) => {
    const style = getComputedStyle(el);
    const line = parseFloat(style.lineHeight) || parseFloat(style.fontSize) * 1.3;
    return {
      text: el.textContent,
      lines: el.getClientRects().length,
      height: el.getBoundingClientRect().height,
      lineHeight: line,
      fitsPage: el.getBoundingClientRect().right <= doc.clientWidth + 0.5,
    };
  });
  // The least readable piece of highlighted code, against the block's background.
  let worstCode = null;
  for (const pre of document.querySelectorAll("pre.hl-code")) {
    const walker = document.createTreeWalker(pre, NodeFilter.SHOW_TEXT);
    for (let text = walker.nextNode(); text; text = walker.nextNode()) {
      if (!text.textContent.trim()) continue;
      const el = text.parentElement;
      const ratio = contrast(rgba(getComputedStyle(el).color), background(el));
      if (!worstCode || ratio < worstCode.ratio) worstCode = { ratio, text: text.textContent.trim().slice(0, 40) };
    }
  }
  const body = document.body;
  return {
    overflow: doc.scrollWidth - doc.clientWidth,
    handles,
    codeBlocks: document.querySelectorAll("pre.hl-code").length,
    worstCode,
    bodyContrast: contrast(rgba(getComputedStyle(body).color), background(body)),
    copyButtonsShown: Array.from(document.querySelectorAll("button[data-copy]")).filter((b) => !b.hidden && b.offsetParent !== null).length,
  };
}

async function layouts(browser) {
  const results = [];
  for (const scheme of ["light", "dark"]) {
    for (const [name, viewport] of Object.entries(VIEWPORTS)) {
      const context = await browser.newContext({ colorScheme: scheme, viewport, isMobile: name === "mobile", hasTouch: name === "mobile" });
      const page = await context.newPage();
      for (const path of config.pages) {
        await page.goto(config.base + path, { waitUntil: "load" });
        results.push({ scheme, viewport: name, path, ...(await page.evaluate(pageFacts)) });
      }
      await context.close();
    }
  }
  return results;
}

// The reply the inbox holds, drawn by the page script over the built "No replies yet.".
async function replies(browser) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(config.base + config.replyPage, { waitUntil: "load" });
  let shown = [];
  try {
    await page.waitForSelector(".replies .reply-content", { timeout: 20000 });
    shown = await page.$$eval(".replies .reply", (items) =>
      items.map((li) => ({
        author: li.querySelector(".author")?.textContent,
        content: li.querySelector(".reply-content")?.textContent,
        time: li.querySelector("time")?.textContent,
      }))
    );
  } catch (e) {}
  const noReplies = await page.evaluate(() => document.querySelector(".no-replies") !== null);
  await context.close();
  return { shown, noRepliesAfter: noReplies };
}

// Clicks `selector`, types `typed` into the dialog and reports where the page went.
async function remoteInteraction(browser, path, selector, typed, viewport) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  let target = null;
  await context.route(/^https:\/\/(?!127\.0\.0\.1)[^/]+\//, (route) => {
    target = route.request().url();
    return route.fulfill({ status: 200, contentType: "text/html", body: "<p>remote server</p>" });
  });
  await page.goto(config.base + path, { waitUntil: "load" });
  await page.click(selector);
  const opened = await page.evaluate(() => document.getElementById("remote-interact").open);
  const title = await page.textContent("#remote-interact-title");
  // A wrong address is refused in place.
  await page.fill("#remote-server", "not a server");
  await page.click("#remote-interact button[type=submit]");
  const refused = await page.evaluate(() => ({
    open: document.getElementById("remote-interact").open,
    error: document.querySelector(".remote-interact-error").hidden ? null : document.querySelector(".remote-interact-error").textContent,
  }));
  await page.fill("#remote-server", typed);
  await Promise.all([page.waitForURL(/authorize_interaction/, { timeout: 20000 }).catch(() => {}), page.press("#remote-server", "Enter")]);
  await context.close();
  return { opened, title, refused, target };
}

async function withoutScript(browser) {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto(config.base + "/", { waitUntil: "load" });
  const facts = await page.evaluate(() => ({
    handle: document.querySelector("footer code.handle")?.textContent,
    followHref: document.querySelector("footer a[data-interact]")?.getAttribute("href"),
    copyHidden: Array.from(document.querySelectorAll("button[data-copy]")).every((b) => b.hidden),
  }));
  await page.click("footer a[data-interact]");
  facts.afterClick = await page.evaluate(() => ({ url: location.href, dialogOpen: document.getElementById("remote-interact").open }));
  await context.close();
  return facts;
}

async function copyHandle(browser) {
  const context = await browser.newContext();
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: config.base });
  const page = await context.newPage();
  await page.goto(config.base + "/", { waitUntil: "load" });
  await page.click("footer button[data-copy]");
  await page
    .waitForFunction(() => document.querySelector("footer button[data-copy]").textContent !== "Copy", null, { timeout: 10000 })
    .catch(() => {});
  const label = await page.textContent("footer button[data-copy]");
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  await context.close();
  return { label, copied };
}

// `relais serve`: a build error appears over the open page and goes once the file is fixed.
async function overlay(browser) {
  const { writeFileSync } = await import("node:fs");
  const o = config.overlay;
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(o.base + o.page, { waitUntil: "load" });
  // The page listens once its live-reload stream is open.
  await page.waitForFunction(() => performance.getEntriesByType("resource").some((r) => r.name.includes("/__relais/livereload")), null, { timeout: 20000 }).catch(() => {});
  writeFileSync(o.file, o.broken);
  let shown = null;
  try {
    await page.waitForSelector("#relais-build-error", { timeout: 30000 });
    shown = await page.textContent("#relais-build-error");
  } catch (e) {}
  const reloaded = page.waitForEvent("load", { timeout: 30000 }).then(() => true, () => false);
  writeFileSync(o.file, o.fixed);
  const didReload = await reloaded;
  const after = await page.evaluate(() => ({
    overlay: document.getElementById("relais-build-error") !== null,
    text: document.querySelector("main")?.textContent || "",
  }));
  await context.close();
  return { shown, didReload, overlayAfter: after.overlay, fixedShown: after.text.includes("Fixed at last.") };
}

const browser = await chromium.launch({ executablePath, headless: true, args: ["--no-sandbox"] });
if (config.overlay) {
  try {
    process.stdout.write(JSON.stringify(await overlay(browser)));
  } finally {
    await browser.close();
  }
  process.exit(0);
}
try {
  const out = {
    version: browser.version(),
    layouts: await layouts(browser),
    replies: await replies(browser),
    follow: await remoteInteraction(browser, "/", "footer a[data-interact]", config.server, VIEWPORTS.mobile),
    reply: await remoteInteraction(browser, config.replyPage, ".fediverse-interactions a[data-interact]", config.server, VIEWPORTS.desktop),
    noScript: await withoutScript(browser),
    copy: await copyHandle(browser),
  };
  process.stdout.write(JSON.stringify(out));
} finally {
  await browser.close();
}
