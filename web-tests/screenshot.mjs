// Takes docs/natter-web.png: the page at desktop size, showing a room's history (said before
// the page connected, under its day's separator, with a message of several lines and code in
// backticks), the "new messages" line with a mention of
// the reader highlighted, unread conversations (a DM's count in red), and the search panel's
// results. Run with `npm run screenshot` (the server binary as for the tests).
//
// Options: --out FILE (default ../docs/natter-web.png), --dark, --phone; --moderation takes
// docs/natter-web-moderation.png instead: a room its operator has made moderated, a member
// given voice, a ban, and the operator's menu open.

import path from 'node:path';
import {
  chat, convButton, launchBrowser, openConv, openUser, say, startServer, tcpUser, WEB_TESTS,
} from './tests/helpers.mjs';

const args = process.argv.slice(2);
const flag = (f) => args.includes(f);
const outArg = args.indexOf('--out');
const moderation = flag('--moderation');
const out = path.resolve(outArg >= 0 ? args[outArg + 1] : path.join(WEB_TESTS, '..', 'docs', moderation ? 'natter-web-moderation.png' : 'natter-web.png'));
const colorScheme = flag('--dark') ? 'dark' : 'light';
const viewport = flag('--phone') ? { width: 390, height: 844 } : { width: 1280, height: 800 };

const server = await startServer();
const browser = await launchBrowser();
let carol;
let bob;
try {
  carol = await tcpUser(server.port, 'carol');
  bob = await tcpUser(server.port, 'bob');
  await (moderation ? moderationScene : mainScene)(carol, bob);
} finally {
  await carol?.close().catch(() => {});
  await bob?.close().catch(() => {});
  await browser.close();
  await server.stop();
}

/** The page's person reads #release, with unread conversations and search results. */
async function mainScene(carol, bob) {
  const kept = /^OK (MESSAGE|SAY) /;
  // Bob's client sends messages of several lines (escaped: `\n` a line break).
  bob.send('MULTILINE ON');
  await bob.expect('OK MULTILINE ON');
  // Before the page connects: Everyone and a room with a topic, kept in the history.
  carol.send('MESSAGE Morning all! Coffee is on');
  await carol.expect(kept);
  bob.send('MESSAGE morning! the build is green again');
  await bob.expect(kept);
  carol.send('JOIN #release');
  await carol.expect(/^OK JOIN #release/);
  carol.send('TOPIC #release Shipping 0.2 on Friday — notes in the wiki');
  await carol.expect('OK TOPIC #release');
  bob.send('JOIN #release');
  await bob.expect(/^OK JOIN #release/);
  for (const [who, text] of [
    [carol, 'The web client is in. Anything else blocking the release?'],
    [bob, 'Only the changelog. I will try it on my phone, in `crates/`:\\n```\\ncargo install --path natter-server\\nnatter-server --store memory 0.0.0.0 8090\\n```'],
    [carol, 'I will tag the release candidate tonight, then we can all try it tomorrow morning.'],
  ]) {
    who.send(`SAY #release ${text}`);
    await who.expect(kept);
  }

  // The page: the room's history on joining, then what came while it looked elsewhere.
  const alice = await openUser(browser, server, 'alice', { viewport, colorScheme });
  await say(alice, '/join #release');
  await chat(alice, 'carol', 'I will tag the release candidate tonight, then we can all try it tomorrow morning.').waitFor();
  await alice.locator('li.msg pre').waitFor();
  await say(alice, 'Reading back: all good from me. Search works too now.');
  await carol.expect('SAY #release alice Reading back: all good from me. Search works too now.');
  await openConv(alice, 'Everyone');
  carol.send('SAY #release Release candidate tagged: 0.2.0-rc1. Alice, can you try the search?');
  await carol.expect(kept);
  bob.send('SAY #release /me starts the phone test');
  await bob.expect(kept);
  await convButton(alice, '#release').getByText('2', { exact: true }).waitFor({ state: 'attached' });
  await openConv(alice, '#release');
  await chat(alice, 'bob', '* bob starts the phone test').waitFor();

  // Something unread elsewhere: a DM and a message in Everyone.
  carol.send('DM alice can you review my PR later?');
  await carol.expect('OK DM alice');
  await convButton(alice, 'carol').getByText('1', { exact: true }).waitFor({ state: 'attached' });
  carol.send('MESSAGE heads up: the staging server restarts at 3');
  await carol.expect(kept);
  await convButton(alice, 'Everyone').getByText('1', { exact: true }).waitFor({ state: 'attached' });

  // The search panel, with results from the room and from Everyone.
  await alice.getByRole('button', { name: 'Search messages' }).click();
  const search = alice.getByRole('dialog', { name: 'Search messages' });
  await search.getByLabel('Words to find').fill('release');
  await search.getByLabel('Words to find').press('Enter');
  await search.getByRole('status').getByText(/newest first/).waitFor();
  await search.getByLabel('Words to find').blur();
  await alice.screenshot({ path: out });
  console.log(`wrote ${out}`);
}

/** The page's person runs #launch: moderated, bob given voice, a spammer banned, the menu open. */
async function moderationScene(carol, bob) {
  const alice = await openUser(browser, server, 'alice', { viewport, colorScheme });
  await say(alice, '/join #launch');
  await alice.getByRole('heading', { name: '#launch', exact: true }).waitFor();
  await say(alice, '/topic Launch day: announcements only, questions in #launch-help');
  for (const who of [carol, bob]) {
    who.send('JOIN #launch');
    await who.expect(/^OK JOIN #launch/);
  }
  const spammer = await tcpUser(server.port, 'spammer');
  spammer.send('JOIN #launch');
  await spammer.expect(/^OK JOIN #launch/);
  spammer.send('SAY #launch FREE CRYPTO click here');
  await spammer.expect(/^OK SAY /);
  await chat(alice, 'spammer', 'FREE CRYPTO click here').waitFor();
  const manage = (name) => alice.getByRole('list', { name: 'Members of #launch' }).getByRole('button', { name: `Manage ${name}` });
  const choose = async (button, item, role = 'menuitem') => {
    if (!(await button.isVisible())) await alice.getByRole('button', { name: 'Show people' }).click();
    await button.click();
    await alice.getByRole('menu').getByRole(role, { name: item, exact: true }).click();
  };
  await choose(manage('spammer'), 'Ban');
  await choose(manage('spammer'), 'Remove from room');
  await spammer.expect('KICKED #launch spammer alice');
  await spammer.close();
  if (await alice.locator('#scrim').isVisible()) await alice.keyboard.press('Escape');
  await choose(alice.getByRole('button', { name: 'Manage #launch' }), 'Moderated', 'menuitemcheckbox');
  await choose(manage('bob'), 'Give voice');
  await bob.expect('MODE #launch alice +v bob');
  await say(alice, 'We are live! bob will post the release notes here.');
  await bob.expect(/^SAY #launch alice We are live/);
  bob.send('SAY #launch Release notes: https://example.org/notes — thanks everyone!');
  await bob.expect(/^OK SAY /);
  await chat(alice, 'bob', 'Release notes: https://example.org/notes — thanks everyone!').waitFor();
  if (await alice.locator('#scrim').isVisible()) await alice.keyboard.press('Escape');
  await alice.getByRole('button', { name: 'Manage #launch' }).click();
  await alice.getByRole('menu').waitFor();
  await alice.screenshot({ path: out });
  console.log(`wrote ${out}`);
}
