// Keeps relais between Netlify builds (written by `relais init --host netlify`).
// The build command installs it into .relais-tools/; a blog's repository has no Cargo.toml,
// so Netlify's own Rust caching does not apply and this local plugin saves the folder.
const TOOLS = ".relais-tools";

module.exports = {
  async onPreBuild({ utils }) {
    await utils.cache.restore(TOOLS);
  },
  async onPostBuild({ utils }) {
    await utils.cache.save(TOOLS);
  },
};
