import { feedPlugin } from "@11ty/eleventy-plugin-rss";

// SITE_URL lets the test put the blog on a loopback port.
const base = process.env.SITE_URL || "https://relais.example/";

export default function (eleventyConfig) {
  eleventyConfig.addPlugin(feedPlugin, {
    type: "json",
    outputPath: "/feed.json",
    collection: { name: "posts", limit: 0 },
    metadata: {
      language: "en",
      title: "Eleventy blog",
      subtitle: "A blog built by Eleventy 3",
      base,
      author: { name: "Ann Author" },
    },
  });
  eleventyConfig.addPassthroughCopy("posts/**/*.png");
}
