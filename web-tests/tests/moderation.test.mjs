// End-to-end tests of room moderation in the page: what an operator is offered and a member
// is not, the room's menu (invite-only, a key, moderation) and a member's menu (voice, ban,
// remove), the refusals of JOIN said as sentences (the key asked for and tried), invitations
// with a button to join, and every change said as a sentence in the other members' pages.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  chat, closePanels, composer, expectFocused, harness, heading, member, noScriptRan, openConv,
  openPeople, say, systemLine, WIDTHS,
} from './helpers.mjs';

const h = harness();
const { cleanup, server, tcp, user } = h;

/** Joins `room` from the message box and waits for its header. */
async function join(page, room) {
  await say(page, `/join ${room}`);
  await heading(page, room).waitFor();
}

/** The room's header button that opens its operator menu. */
const manageRoom = (page, room) => page.getByRole('button', { name: `Manage ${room}`, exact: true });

/** The button beside a member that opens their menu (operators only). */
const manageMember = (page, room, name) => member(page, room, name).getByRole('button', { name: `Manage ${name}`, exact: true });

const topicButton = (page) => page.getByRole('button', { name: 'Topic…', exact: true });

/** Opens the room's menu and returns it. */
async function openRoomMenu(page, room) {
  await manageRoom(page, room).click();
  const menu = page.getByRole('menu', { name: `Manage ${room}` });
  await menu.waitFor();
  return menu;
}

/** Opens a member's menu (the people panel first, on a phone) and returns it. */
async function openMemberMenu(page, room, name) {
  const button = manageMember(page, room, name);
  if (!(await button.isVisible())) await page.getByRole('button', { name: 'Show people' }).click();
  await button.click();
  const menu = page.getByRole('menu', { name: `Manage ${name}` });
  await menu.waitFor();
  return menu;
}

/** Chooses an action (not a setting) from the room's menu. */
async function chooseInRoomMenu(page, room, name) {
  const menu = await openRoomMenu(page, room);
  await menu.getByRole('menuitem', { name, exact: true }).click();
  await menu.waitFor({ state: 'hidden' });
}

/** Flips one of the room's settings from its menu. */
async function flip(page, room, name) {
  const menu = await openRoomMenu(page, room);
  await menu.getByRole('menuitemcheckbox', { name, exact: true }).click();
  await menu.waitFor({ state: 'hidden' });
}

/** Fills and submits the dialog that asks for one thing. */
async function answer(page, title, value) {
  const dialog = page.getByRole('dialog', { name: title });
  await dialog.getByRole('textbox').or(dialog.getByRole('spinbutton')).fill(value);
  await dialog.getByRole('textbox').or(dialog.getByRole('spinbutton')).press('Enter');
  return dialog;
}

/** Whether the locator's box lies inside a viewport `width` wide. */
async function fits(locator, width) {
  const box = await locator.boundingBox();
  return box && box.x >= 0 && box.x + box.width <= width;
}

describe('room moderation in the page', { timeout: 90_000 }, () => {
  for (const [label, viewport] of WIDTHS) {
    test(`${label}: an operator has the room's and the members' menus, a member neither, nor Topic… in a +t room`, async (t) => {
      t.after(cleanup);
      const srv = await server();
      const alice = await user(srv, 'alice', { viewport });
      await join(alice, '#den');
      const bob = await user(srv, 'bob', { viewport });
      await join(bob, '#den');
      await systemLine(alice, 'bob joined #den.').waitFor();

      // The member: no topic box to be refused, no settings, no tools on anyone.
      await bob.getByRole('button', { name: 'Leave' }).waitFor();
      assert.equal(await topicButton(bob).isVisible(), false);
      assert.equal(await manageRoom(bob, '#den').isVisible(), false);
      await openPeople(bob);
      await member(bob, '#den', 'alice').getByText('op').waitFor();
      assert.equal(await manageMember(bob, '#den', 'alice').count(), 0);
      await closePanels(bob);

      // The operator: both, fitting the screen; Esc closes the menu and the focus goes back.
      await topicButton(alice).waitFor();
      const menu = await openRoomMenu(alice, '#den');
      assert.ok(await fits(menu, viewport?.width ?? 1280), 'the room menu fits the screen');
      assert.ok(await fits(manageRoom(alice, '#den'), viewport?.width ?? 1280), 'the menu button fits beside the room name');
      assert.equal(await menu.getByRole('menuitemcheckbox', { name: 'Invite only' }).getAttribute('aria-checked'), 'false');
      assert.equal(await menu.getByRole('menuitemcheckbox', { name: 'Only operators set the topic' }).getAttribute('aria-checked'), 'true');
      // The first item has the focus; the arrows move it.
      const focused = () => alice.evaluate(() => document.activeElement.textContent);
      await alice.waitForFunction(() => document.activeElement?.textContent === 'Invite only');
      await alice.keyboard.press('ArrowDown');
      assert.equal(await focused(), 'Moderated');
      await alice.keyboard.press('ArrowUp');
      await alice.keyboard.press('ArrowUp');
      assert.equal(await focused(), 'Bans…');
      await alice.keyboard.press('Escape');
      await menu.waitFor({ state: 'hidden' });
      await alice.waitForFunction(() => document.activeElement?.id === 'room-menu-button');
      await openPeople(alice);
      await member(alice, '#den', 'alice').getByText('you').waitFor();
      assert.equal(await manageMember(alice, '#den', 'alice').count(), 0, 'no menu on oneself');
      const memberMenu = await openMemberMenu(alice, '#den', 'bob');
      for (const item of ['Give voice', 'Make operator', 'Ban', 'Remove from room']) {
        await memberMenu.getByRole('menuitem', { name: item, exact: true }).waitFor();
      }
      assert.ok(await fits(memberMenu, viewport?.width ?? 1280), 'the member menu fits the screen');
      await alice.keyboard.press('Escape');
      await memberMenu.waitFor({ state: 'hidden' });

      // -t: every member may set the topic, so the member is offered it.
      // On a phone the people panel is still open: Esc again closes it.
      await closePanels(alice);
      await flip(alice, '#den', 'Only operators set the topic');
      await systemLine(bob, 'alice let every member set the topic of #den.').waitFor();
      await topicButton(bob).click();
      await bob.getByLabel('New topic').fill('open to all');
      await bob.getByLabel('New topic').press('Enter');
      await systemLine(alice, 'bob set the topic: open to all').waitFor();
      noScriptRan(alice);
      noScriptRan(bob);
    });
  }

  test('invite-only: the refusal is a sentence, the invitation a notice whose button joins', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const alice = await user(srv, 'alice');
    await join(alice, '#den');
    const bob = await user(srv, 'bob');

    await flip(alice, '#den', 'Invite only');
    await systemLine(alice, 'You made #den invite-only.').waitFor();
    await alice.getByRole('img', { name: 'Locked: invite-only' }).waitFor();

    await say(bob, '/join #den');
    await systemLine(bob, '#den is invite-only: you can join once one of its members invites you.').waitFor();

    await chooseInRoomMenu(alice, '#den', 'Invite…');
    const dialog = await answer(alice, 'Invite to #den', 'bob');
    await dialog.waitFor({ state: 'hidden' });
    await systemLine(alice, 'You invited bob to #den.').waitFor();

    const notice = systemLine(bob, 'alice invited you to #den.');
    await notice.waitFor();
    await notice.getByRole('button', { name: 'Join #den' }).click();
    await heading(bob, '#den').waitFor();
    await member(bob, '#den', 'alice').getByText('op').waitFor();
    await bob.getByRole('img', { name: 'Locked: invite-only' }).waitFor();
    await member(alice, '#den', 'bob').waitFor();
    noScriptRan(alice);
    noScriptRan(bob);
  });

  test('a key: the page asks for it, says a wrong one in the dialog, and joins with the right one', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const alice = await user(srv, 'alice');
    await join(alice, '#den');
    const carol = await tcp(srv, 'carol');
    carol.send('JOIN #den');
    await carol.expect(/^OK JOIN #den/);

    await chooseInRoomMenu(alice, '#den', 'Set a key…');
    await (await answer(alice, 'Key of #den', 'sesame')).waitFor({ state: 'hidden' });
    await systemLine(alice, 'You set a key on #den: joining needs it.').waitFor();
    await carol.expect('MODE #den alice +k sesame');
    await alice.getByRole('img', { name: 'Locked: joining needs a key' }).waitFor();

    const bob = await user(srv, 'bob');
    await say(bob, '/join #den');
    const dialog = bob.getByRole('dialog', { name: 'Join #den' });
    await dialog.getByText('#den has a key.').waitFor();
    await answer(bob, 'Join #den', 'nope');
    await dialog.getByRole('alert').getByText('That is not the key of #den.').waitFor();
    await answer(bob, 'Join #den', 'sesame');
    await heading(bob, '#den').waitFor();
    await dialog.waitFor({ state: 'hidden' });
    await expectFocused(bob, 'composer-input');
    await carol.expect('JOINED #den bob');
    // Esc closes the dialog without joining.
    const dave = await user(srv, 'dave');
    await say(dave, '/join #den');
    await dave.getByRole('dialog', { name: 'Join #den' }).waitFor();
    await dave.keyboard.press('Escape');
    await dave.getByRole('dialog', { name: 'Join #den' }).waitFor({ state: 'hidden' });
    assert.equal(await heading(dave, 'Everyone').isVisible(), true);
    // The key typed with /join.
    await say(dave, '/join #den sesame');
    await heading(dave, '#den').waitFor();
    noScriptRan(alice);
    noScriptRan(bob);
  });

  test('moderated: a member without voice has the box closed with a hint, and speaks once given voice', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const alice = await user(srv, 'alice');
    await join(alice, '#den');
    const bob = await user(srv, 'bob');
    await join(bob, '#den');
    await member(alice, '#den', 'bob').waitFor();

    await flip(alice, '#den', 'Moderated');
    await systemLine(bob, 'alice made #den moderated: only operators and voiced members may speak.').waitFor();
    await bob.locator('#room-flags').getByText('moderated', { exact: true }).waitFor();
    await bob.getByPlaceholder('Only operators and voiced members may speak here').waitFor();
    assert.equal(await composer(bob).isDisabled(), true);
    // The operator may speak.
    assert.equal(await composer(alice).isDisabled(), false);

    const menu = await openMemberMenu(alice, '#den', 'bob');
    await menu.getByRole('menuitem', { name: 'Give voice' }).click();
    await systemLine(alice, 'You gave bob voice.').waitFor();
    await systemLine(bob, 'alice gave you voice.').waitFor();
    await member(alice, '#den', 'bob').getByText('voice', { exact: true }).waitFor();
    await member(bob, '#den', 'bob').getByText('voice', { exact: true }).waitFor();
    assert.equal(await composer(bob).isDisabled(), false);
    await say(bob, 'thanks for the voice');
    await chat(alice, 'bob', 'thanks for the voice').waitFor();

    // Voice taken again: the box closes again.
    const again = await openMemberMenu(alice, '#den', 'bob');
    await again.getByRole('menuitem', { name: 'Remove voice' }).click();
    await systemLine(bob, 'alice took voice from you.').waitFor();
    await bob.getByPlaceholder('Only operators and voiced members may speak here').waitFor();
    await flip(alice, '#den', 'Moderated');
    await systemLine(bob, 'alice made #den unmoderated: every member may speak.').waitFor();
    assert.equal(await composer(bob).isDisabled(), false);
    noScriptRan(alice);
    noScriptRan(bob);
  });

  test('a ban from the page keeps a TCP user out, by account or by name, and the ban list lifts it', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const troll = await h.account(srv, 'troll');
    const pest = await tcp(srv, 'pest');
    const alice = await user(srv, 'alice');
    await join(alice, '#den');
    const bob = await user(srv, 'bob');
    await join(bob, '#den');
    for (const c of [troll, pest]) {
      c.send('JOIN #den');
      await c.expect(/^OK JOIN #den/);
    }
    await member(alice, '#den', 'troll').waitFor();
    await member(alice, '#den', 'pest').waitFor();

    // troll is signed into its account: the ban is the account's, whatever its name.
    await (await openMemberMenu(alice, '#den', 'troll')).getByRole('menuitem', { name: 'Ban' }).click();
    await systemLine(alice, 'You banned the account troll from #den.').waitFor();
    await systemLine(bob, 'alice banned the account troll from #den.').waitFor();
    await troll.expect('MODE #den alice +b $a:troll');
    await (await openMemberMenu(alice, '#den', 'troll')).getByRole('menuitem', { name: 'Remove from room' }).click();
    await troll.expect('KICKED #den troll alice');
    await systemLine(bob, 'troll was removed from #den by alice.').waitFor();
    troll.send('JOIN #den');
    await troll.expect(/^ERROR BANNED /);

    // pest is not: a ban of its name.
    await (await openMemberMenu(alice, '#den', 'pest')).getByRole('menuitem', { name: 'Ban' }).click();
    await systemLine(bob, 'alice banned pest!*@* from #den.').waitFor();
    pest.send('SAY #den still here');
    await pest.expect(/^ERROR BANNED /);

    // The ban list: both, each with a button that lifts it.
    await chooseInRoomMenu(alice, '#den', 'Bans…');
    const bans = alice.getByRole('dialog', { name: 'Bans in #den' });
    await bans.getByText('2 bans').waitFor();
    await bans.getByText('account troll').waitFor();
    await bans.getByRole('button', { name: 'Remove the ban on $a:troll' }).click();
    await bans.getByText('1 ban', { exact: true }).waitFor();
    await systemLine(bob, 'alice lifted the ban on the account troll.').waitFor();
    await alice.keyboard.press('Escape');
    await bans.waitFor({ state: 'hidden' });
    troll.send('JOIN #den');
    await troll.expect(/^OK JOIN #den/);
    noScriptRan(alice);
    noScriptRan(bob);
  });

  test('slash commands do what the menus do: /op, /voice, /mode, /ban, /unban, /invite, /bans', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const carol = await tcp(srv, 'carol');
    const dave = await tcp(srv, 'dave');
    const alice = await user(srv, 'alice');
    await join(alice, '#den');
    carol.send('JOIN #den');
    await carol.expect(/^OK JOIN #den/);
    await member(alice, '#den', 'carol').waitFor();

    await say(alice, '/voice carol');
    await carol.expect('MODE #den alice +v carol');
    await systemLine(alice, 'You gave carol voice.').waitFor();
    await say(alice, '/op carol');
    await carol.expect('OPERATOR #den carol');
    await say(alice, '/deop carol');
    await carol.expect('MODE #den alice -o carol');
    await say(alice, '/mode +l 20');
    await carol.expect('MODE #den alice +l 20');
    await say(alice, '/mode');
    await systemLine(alice, 'The modes of #den: +ntl 20').waitFor();
    await say(alice, '/mode m');
    await systemLine(alice, 'Usage: /mode [+x [arg]]').waitFor();

    await say(alice, '/ban carol');
    await carol.expect('MODE #den alice +b carol!*@*');
    await systemLine(alice, 'You banned carol!*@* from #den.').waitFor();
    await say(alice, '/unban carol');
    await carol.expect('MODE #den alice -b carol!*@*');
    await systemLine(alice, 'You lifted the ban on carol!*@*.').waitFor();
    await say(alice, '/ban *!*@spam');
    await carol.expect('MODE #den alice +b *!*@spam');

    await say(alice, '/invite dave');
    await dave.expect(/^INVITED #den alice/);
    await systemLine(alice, 'You invited dave to #den.').waitFor();
    await say(alice, '/invite nobody');
    await systemLine(alice, 'Could not invite nobody:').waitFor();

    await say(alice, '/bans');
    const bans = alice.getByRole('dialog', { name: 'Bans in #den' });
    await bans.getByText('1 ban', { exact: true }).waitFor();
    await bans.getByText('*!*@spam').waitFor();
    await alice.keyboard.press('Escape');
    await bans.waitFor({ state: 'hidden' });

    // carol is no operator now: the server's refusal, as a sentence.
    carol.send('MODE #den +m');
    await carol.expect(/^ERROR NOT_OPERATOR /);
    const bob = await user(srv, 'bob');
    await join(bob, '#den');
    await say(bob, '/op bob');
    await systemLine(bob, 'Could not change the modes of #den (+o bob):').waitFor();
    // Outside a room, the commands say where they work.
    await openConv(alice, 'Everyone');
    await say(alice, '/ban carol');
    await systemLine(alice, '/ban works in a room you are in.').waitFor();
    noScriptRan(alice);
    noScriptRan(bob);
  });

  test('refusals and others\' changes as sentences: banned from a room, made and unmade an operator, a limit', async (t) => {
    t.after(cleanup);
    const srv = await server();
    const carol = await tcp(srv, 'carol');
    carol.send('JOIN #den');
    await carol.expect(/^OK JOIN #den/);
    carol.send('MODE #den +b bob');
    await carol.expect('OK MODE #den +b bob!*@*');
    const bob = await user(srv, 'bob');
    await say(bob, '/join #den');
    await systemLine(bob, 'You are banned from #den: you cannot join it.').waitFor();
    // Operator status and the room's modes from another client's MODE, as sentences.
    const alice = await user(srv, 'alice');
    await join(alice, '#den');
    carol.send('MODE #den +o alice');
    await carol.expect('OK MODE #den +o alice');
    await systemLine(alice, 'You are now an operator of #den.').waitFor();
    await manageRoom(alice, '#den').waitFor();
    carol.send('MODE #den +l 5');
    await systemLine(alice, 'carol limited #den to 5 members.').waitFor();
    carol.send('MODE #den -o alice');
    await systemLine(alice, 'carol took operator status from you.').waitFor();
    await manageRoom(alice, '#den').waitFor({ state: 'hidden' });
    assert.equal(await topicButton(alice).isVisible(), false);
    // Banned while in the room, without voice: what the page says is refused, in a sentence.
    carol.send('MODE #den +b alice');
    await systemLine(alice, 'carol banned alice!*@* from #den.').waitFor();
    await say(alice, 'can anyone hear me?');
    await chat(alice, 'alice', 'can anyone hear me?')
      .getByText('Not delivered: you are banned from #den, and may not speak there without voice.').waitFor();
    noScriptRan(alice);
    noScriptRan(bob);
  });
});
