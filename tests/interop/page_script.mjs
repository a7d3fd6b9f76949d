// Runs the default theme's interactions.js on a built post page in jsdom, with `fetch`
// answering the given interactions JSON, and prints what the page then shows.
//   node page_script.mjs PAGE.html SCRIPT.js INTERACTIONS.json PAGE_URL
import { readFileSync } from "node:fs";
import { JSDOM } from "jsdom";

const [pagePath, scriptPath, dataPath, pageUrl] = process.argv.slice(2);
const dom = new JSDOM(readFileSync(pagePath, "utf8"), { runScripts: "outside-only", url: pageUrl });
const { window } = dom;
const requested = [];
window.fetch = (url) => {
  requested.push(String(url));
  const body = JSON.parse(readFileSync(dataPath, "utf8"));
  return Promise.resolve({ ok: true, json: () => Promise.resolve(body) });
};
window.eval(readFileSync(scriptPath, "utf8"));
await new Promise((resolve) => setTimeout(resolve, 50));

const doc = window.document;
const section = doc.getElementById("interactions");
const replies = [...section.querySelectorAll(".replies > li")];
console.log(
  JSON.stringify({
    requested,
    counts: section.querySelector(".reaction-counts")?.textContent ?? null,
    reactors: section.querySelectorAll(".reactors > li").length,
    replies: replies.map((li) => ({
      depth: li.style.getPropertyValue("--depth"),
      author: li.querySelector(".author")?.textContent ?? null,
      authorIsLink: li.querySelector(".author")?.tagName === "A",
      content: li.querySelector(".reply-content")?.innerHTML ?? null,
      time: li.querySelector("time")?.textContent ?? null,
    })),
    fallbacks: [...section.querySelectorAll(".reactors .avatar-fallback")].map((span) => ({
      title: span.parentNode.getAttribute("title"),
      label: span.getAttribute("aria-label"),
      text: span.textContent,
    })),
    quotedBy: [...section.querySelectorAll(".quoted-by > li")].map((li) => ({
      text: li.textContent.trim(),
      href: li.querySelector("a")?.getAttribute("href") ?? null,
    })),
    javascriptLinks: section.querySelectorAll('a[href^="javascript:"]').length,
    noReplies: section.querySelectorAll(".no-replies").length,
  }),
);
