#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# `make export`: the reverse of `make series`.  Turn the commits of a branch
# of the series repository ($KLU_CACHE/series-git, made by `make series`)
# back into the overlay: one patches/NNNN-<shortlog>.patch per commit
# (changelog, then the diff of every file that exists upstream or that an
# earlier commit added), the files each commit adds at their kernel paths,
# and patches/series.  The way to change a patch: `make series`, then edit
# the `series` branch there (git rebase -i, commit --fixup, ...), then
# `make export` and commit what it changed here.
#
# usage: export.sh [BRANCH]   (default: series)

. "$(dirname "$0")/lib.sh"

GITDIR=$KLU_CACHE/series-git
BRANCH=${1:-series}

need_host_cmd python3 python3
[ -d "$GITDIR/.git" ] || die "no series repository; run: make series"
git -C "$GITDIR" rev-parse -q --verify "$BRANCH" >/dev/null || die "no branch $BRANCH in $GITDIR"
[ -z "$(git -C "$GITDIR" status --porcelain --untracked-files=no)" ] ||
	die "$GITDIR has uncommitted changes: commit them to $BRANCH first"

python3 - "$GITDIR" "$BRANCH" "$TOP" <<'PY'
import os, re, subprocess, sys

gitdir, branch, top = sys.argv[1:]

def git(*args):
    return subprocess.run(["git", "-C", gitdir, *args], check=True,
                          capture_output=True, text=True).stdout

commits = git("rev-list", "--reverse", f"base..{branch}").split()
if not commits:
    sys.exit("export: no commits between base and " + branch)

def name(i, subject):
    s = re.sub(r"[^A-Za-z0-9_.]+", "-", subject).strip("-")
    return f"{i:04d}-{s[:64].rstrip('-')}.patch"

# Start from a clean slate: the manifest and the patches are rewritten, and
# overlay files that no commit adds any more are removed.
old_overlay = set()
with open(os.path.join(top, "patches", "series")) as f:
    for line in f:
        line = line.split("#", 1)[0].rstrip()
        if line[:1].isspace() and line.strip():
            old_overlay.add(line.strip())
for f in os.listdir(os.path.join(top, "patches")):
    if f.endswith(".patch"):
        os.remove(os.path.join(top, "patches", f))

manifest = ["# The series, in order: see tooling/series.lib.sh for the format.",
            "# Each patch file is named for its position and shortlog; the overlay files a",
            "# patch adds are indented under it.  Written by `make export`."]
for i, c in enumerate(commits, 1):
    subject = git("log", "-1", "--format=%s", c).strip()
    body = git("log", "-1", "--format=%b", c).strip("\n")
    added = [l.split("\t", 1)[1] for l in
             git("-c", "core.quotepath=off", "diff", "--name-status", "--no-renames", f"{c}^", c).splitlines()
             if l.startswith("A\t")]
    diff = git("diff", "--no-renames", f"{c}^", c, "--", ".", *[f":(exclude){a}" for a in added])
    fn = name(i, subject)
    with open(os.path.join(top, "patches", fn), "w") as out:
        out.write(f"Subject: [PATCH] {subject}\n\n")
        if body:
            out.write(body + "\n")
        out.write("---\n" + diff)
    manifest.append(fn)
    for a in sorted(added):
        manifest.append("\t" + a)
        dst = os.path.join(top, a)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst, "w") as out:
            out.write(git("show", f"{c}:{a}"))
        old_overlay.discard(a)
for f in old_overlay:
    p = os.path.join(top, f)
    if os.path.exists(p):
        os.remove(p)
with open(os.path.join(top, "patches", "series"), "w") as out:
    out.write("\n".join(manifest) + "\n")
print(f"export: {len(commits)} patches written to patches/")
PY
