; Inno Setup 6 script around the PyInstaller bundle (dist\lunglens\).  Run via installer\build_windows.ps1, or:
;     iscc /DAppVersion=0.1.0 installer\windows\lunglens.iss
; Result: dist\LungLens-<version>-setup.exe.  Installs per user by default (no admin rights needed), offers
; all-users in the dialog; Start-menu entry, optional desktop shortcut, uninstaller in "Apps & features".
; UNTESTED here (no Windows machine in the LungLens CI) -- see installer\README.md.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define Root AddBackslash(SourcePath) + "..\.."

[Setup]
AppId={{6E0C3F0B-5B8B-4B7E-9C55-3F1B7C0E2A91}
AppName=LungLens
AppVersion={#AppVersion}
AppVerName=LungLens {#AppVersion}
AppPublisher=LungLens contributors
AppComments=Chest-CT viewer with COVID-19 screening heatmaps. Research use only, not a diagnosis.
DefaultDirName={autopf}\LungLens
DefaultGroupName=LungLens
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#Root}\dist
OutputBaseFilename=LungLens-{#AppVersion}-setup
SetupIconFile={#Root}\build\installer\icons\lunglens.ico
UninstallDisplayIcon={app}\lunglens.exe
LicenseFile={#Root}\installer\windows\LICENSE-NOTICE.txt
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
ChangesAssociations=no

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#Root}\dist\lunglens\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\LungLens"; Filename: "{app}\lunglens.exe"; Comment: "Chest-CT viewer (research use only)"
Name: "{autodesktop}\LungLens"; Filename: "{app}\lunglens.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\lunglens.exe"; Description: "{cm:LaunchProgram,LungLens}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
; the install folder only; the program writes nothing there at run time
Type: dirifempty; Name: "{app}"

[Code]
// LungLens keeps its caches (demo scan, ONNX exports, PACS downloads) and settings under
// %LOCALAPPDATA%\lunglens (platformdirs).  Uninstalling asks whether to remove them too.
procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
var
  UserData: String;
begin
  if CurUninstallStep = usPostUninstall then
  begin
    UserData := ExpandConstant('{localappdata}\lunglens');
    if DirExists(UserData) and (not UninstallSilent) then
      if MsgBox('Also remove your LungLens caches and settings (' + UserData + ')?' + #13#10 +
                'Your scans and exported files are not touched.', mbConfirmation, MB_YESNO) = IDYES then
        DelTree(UserData, True, True, True);
  end;
end;
