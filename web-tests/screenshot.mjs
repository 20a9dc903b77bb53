// Takes docs/natter-web.png: the page at desktop size, with two browser users and a TCP client
// chatting. Run with `npm run screenshot` (the server binary as for the tests).
//
// Options: --out FILE (default ../docs/natter-web.png), --dark, --phone.

import path from 'node:path';
import {
  chat, convButton, launchBrowser, openUser, online, say, startServer, systemLine, tcpUser, WEB_TESTS,
} from './tests/helpers.mjs';

const args = process.argv.slice(2);
const flag = (f) => args.includes(f);
const outArg = args.indexOf('--out');
const out = path.resolve(outArg >= 0 ? args[outArg + 1] : path.join(WEB_TESTS, '..', 'docs', 'natter-web.png'));
const colorScheme = flag('--dark') ? 'dark' : 'light';
const viewport = flag('--phone') ? { width: 390, height: 844 } : { width: 1280, height: 800 };

const server = await startServer();
const browser = await launchBrowser();
let carol;
try {
  carol = await tcpUser(server.port, 'carol');
  const alice = await openUser(browser, server, 'alice', { viewport, colorScheme });
  const bob = await openUser(browser, server, 'bob', { viewport: { width: 1280, height: 800 }, colorScheme });
  await online(alice, 'bob').waitFor({ state: 'attached' });

  await say(alice, 'Morning all! Coffee is on');
  await chat(bob, 'alice', 'Morning all! Coffee is on').waitFor();
  carol.send('MESSAGE morning! the build is green again');
  await carol.expect('OK MESSAGE 2');
  await say(bob, 'Nice. Was it the flaky socket test?');
  await carol.expect('MESSAGE bob Nice. Was it the flaky socket test?');
  carol.send('MESSAGE yep: the port was reused before the old server let go of it');
  await carol.expect(/^OK MESSAGE/);

  // A room with a topic, made by the TCP user.
  carol.send('JOIN #release');
  await carol.expect(/^OK JOIN #release/);
  carol.send('TOPIC #release Shipping 0.2 on Friday — notes in the wiki');
  await carol.expect('OK TOPIC #release');
  await say(alice, '/join #release');
  await alice.getByRole('heading', { name: '#release', exact: true }).waitFor();
  await say(bob, '/join #release');
  await systemLine(alice, 'bob joined #release.').waitFor();
  carol.send('SAY #release The web client is in. Anything else blocking?');
  await carol.expect(/^OK SAY/);
  await say(alice, 'Only the changelog. I will write it after lunch.');
  await chat(bob, 'alice', 'Only the changelog. I will write it after lunch.').waitFor();
  await say(bob, '/me takes the release notes');
  await chat(alice, 'bob', '* bob takes the release notes').waitFor();
  carol.send('SAY #release thanks both');
  await carol.expect(/^OK SAY/);
  carol.send('SAY #release I will tag the release candidate tonight, then we can all try it tomorrow morning.');
  await carol.expect(/^OK SAY/);
  await chat(alice, 'carol', 'I will tag the release candidate tonight, then we can all try it tomorrow morning.').waitFor();
  await say(bob, 'I can test it on my phone, the page works there too.');
  await chat(alice, 'bob', 'I can test it on my phone, the page works there too.').waitFor();

  // Something unread elsewhere: a DM and a message in Everyone.
  carol.send('DM alice can you review my PR later?');
  await carol.expect('OK DM alice');
  await convButton(alice, 'carol').getByText('1', { exact: true }).waitFor({ state: 'attached' });
  await say(bob, '/dm alice lunch at noon?');
  await convButton(alice, 'bob').getByText('1', { exact: true }).waitFor({ state: 'attached' });
  carol.send('MESSAGE heads up: the staging server restarts at 3');
  await carol.expect(/^OK MESSAGE/);
  await convButton(alice, 'Everyone').getByText('1', { exact: true }).waitFor({ state: 'attached' });

  await alice.locator('#composer-input').fill('Sounds good');
  await alice.locator('#composer-input').blur();
  await alice.screenshot({ path: out });
  console.log(`wrote ${out}`);
} finally {
  await carol?.close().catch(() => {});
  await browser.close();
  await server.stop();
}
