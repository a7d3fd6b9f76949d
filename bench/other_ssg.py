"""Turns a blog written by bench/generate.py into the same blog for Hugo or Zola, with a
minimal theme each (home pagination with summaries, post pages, tag pages), so
bench/build.sh can time the three on one corpus.

Usage: python3 bench/other_ssg.py SITE OUT hugo|zola
"""
import os, re, shutil, sys

site, out, engine = sys.argv[1], sys.argv[2], sys.argv[3]
posts_in = os.path.join(site, "content", "posts")
shutil.rmtree(out, ignore_errors=True)
os.makedirs(os.path.join(out, "content", "posts"))


def write(rel, text):
    path = os.path.join(out, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><main>{body}</main></body></html>
"""

if engine == "hugo":
    write("hugo.toml", 'baseURL = "https://bench.example/"\ntitle = "Bench"\npaginate = 10\n'
          '[markup.highlight]\nnoClasses = false\n')
    write("layouts/index.html", PAGE.format(title="{{ .Site.Title }}", body=
          '{{ range (.Paginate (where .Site.RegularPages "Section" "posts")).Pages }}'
          '<article><h2><a href="{{ .RelPermalink }}">{{ .Title }}</a></h2>'
          '<time>{{ .Date.Format "2 January 2006" }}</time>{{ .Summary }}</article>{{ end }}'
          '{{ with .Paginator.Next }}<a href="{{ .URL }}">Older</a>{{ end }}'))
    write("layouts/_default/single.html", PAGE.format(title="{{ .Title }}", body=
          '<h1>{{ .Title }}</h1><time>{{ .Date.Format "2 January 2006" }}</time>'
          '{{ .Content }}<ul>{{ range .Params.tags }}'
          '<li><a href="/tags/{{ . | urlize }}/">{{ . }}</a></li>{{ end }}</ul>'))
    write("layouts/_default/list.html", PAGE.format(title="{{ .Title }}", body=
          '<h1>{{ .Title }}</h1>{{ range .Pages }}<article><a href="{{ .RelPermalink }}">'
          '{{ .Title }}</a> {{ .Summary }}</article>{{ end }}'))
    for name in sorted(os.listdir(posts_in)):
        shutil.copy(os.path.join(posts_in, name), os.path.join(out, "content", "posts", name))
elif engine == "zola":
    write("config.toml", 'base_url = "https://bench.example"\ntitle = "Bench"\n'
          'compile_sass = false\nbuild_search_index = false\n'
          'taxonomies = [{ name = "tags" }]\n'
          # Zola 0.22's highlighter (giallo); classes, as relais and Hugo write them.
          '[markdown.highlighting]\ntheme = "gruvbox-dark-medium"\nstyle = "class"\n')
    write("content/_index.md", '+++\nsort_by = "date"\npaginate_by = 10\n'
          'transparent = true\n+++\n')
    write("content/posts/_index.md", '+++\nsort_by = "date"\npaginate_by = 10\n'
          'transparent = true\n+++\n')
    listing = ('{% for page in paginator.pages %}<article><h2><a href="{{ page.permalink }}">'
               '{{ page.title }}</a></h2><time>{{ page.date }}</time>{{ page.summary | safe }}'
               '</article>{% endfor %}')
    write("templates/index.html", PAGE.format(title="{{ config.title }}", body=listing))
    write("templates/section.html", PAGE.format(title="{{ section.title }}", body=listing))
    write("templates/page.html", PAGE.format(title="{{ page.title }}", body=
          '<h1>{{ page.title }}</h1><time>{{ page.date }}</time>{{ page.content | safe }}'
          '<ul>{% for t in page.taxonomies.tags %}<li><a href="/tags/{{ t | slugify }}/">'
          '{{ t }}</a></li>{% endfor %}</ul>'))
    write("templates/tags/list.html", PAGE.format(title="Tags", body=
          '{% for t in terms %}<a href="{{ t.permalink }}">{{ t.name }}</a>{% endfor %}'))
    write("templates/tags/single.html", PAGE.format(title="{{ term.name }}", body=
          '{% for page in term.pages %}<article><a href="{{ page.permalink }}">{{ page.title }}'
          '</a> {{ page.summary | safe }}</article>{% endfor %}'))
    for name in sorted(os.listdir(posts_in)):
        with open(os.path.join(posts_in, name)) as f:
            text = f.read()
        # Zola keeps tags under [taxonomies], after the page's own keys.
        text = re.sub(r'^(tags = .*)\n(authors = .*)\n\+\+\+',
                      r'\2\n[taxonomies]\n\1\n+++', text, count=1, flags=re.M)
        write(os.path.join("content", "posts", name), text)
else:
    sys.exit(f"unknown engine {engine!r}: hugo or zola")
