"""Writes a synthetic blog of COUNT posts (~800 words, 3 tags, 2 code blocks each) into SITE.

Usage: python3 bench/generate.py SITE COUNT
"""
import os, random, sys
site, count = sys.argv[1], int(sys.argv[2])
rng = random.Random(42)
words = ("the a of to and in that is for it with as was on be at by this had not are but from "
         "or have an they which one you were her all she there would their we him been has when "
         "who will more no if out so said what up its about into than them can only other new "
         "some could time these two may then do first any my now such like our over man me even "
         "most made after also did many before must through back years where much your way well "
         "down should because each just those people how too little state good very make world "
         "still own see men work long get here between both life being under never day same "
         "another know while last might us great old year off come since against go came right "
         "used take three server rust protocol federation static inbox follower timeline build").split()
tags = ["rust", "web", "fediverse", "travel", "bread", "servers", "notes", "photography",
        "programming", "meta", "linux", "music", "books", "hiking", "design", "security"]
os.makedirs(f"{site}/content/posts", exist_ok=True)
with open(f"{site}/config.toml", "w") as f:
    f.write('title = "Bench"\nbase_url = "https://bench.example"\n\n'
            '[[authors]]\nid = "ann"\nname = "Ann"\n')
with open(f"{site}/content/about.md", "w") as f:
    f.write('+++\ntitle = "About"\n+++\nA benchmark site.\n')
code = '''```rust
fn handle(activity: &Activity) -> Result<(), InboxError> {
    match activity.kind.as_str() {
        "Follow" => accept_follow(activity),
        "Create" => store_reply(activity),
        other => Err(InboxError::Unsupported(other.to_string())),
    }
}
```'''
def paragraph(n):
    s = " ".join(rng.choice(words) for _ in range(n))
    return s[0].upper() + s[1:] + "."
for i in range(count):
    day = 1 + i % 28
    month = 1 + (i // 28) % 12
    year = 2000 + i // (28 * 12)
    parts = []
    total = 0
    while total < 800:
        n = rng.randint(40, 110)
        parts.append(paragraph(n))
        total += n
        if len(parts) == 3:
            parts.append("<!-- more -->")
        if len(parts) % 4 == 0:
            parts.append(f"## Section {len(parts)}")
    parts.insert(5, code)
    parts.insert(9, "```toml\n[inbox]\nstore = \"relais.db\"\n```")
    post_tags = rng.sample(tags, 3)
    with open(f"{site}/content/posts/post-{i:05}.md", "w") as f:
        f.write(f'+++\ntitle = "Post number {i}"\ndate = {year:04}-{month:02}-{day:02}\n'
                f'tags = {post_tags!r}\nauthors = ["ann"]\n+++\n\n'.replace("'", '"'))
        f.write("\n\n".join(parts) + "\n")
